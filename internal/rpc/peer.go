package rpc

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// aLongTimeAgo unblocks pending reads when a deadline is set to it.
var aLongTimeAgo = time.Unix(1, 0)

// Caller is who is on the other end of a connection, as the kernel reports it.
type Caller struct {
	PID    int32
	UID    uint32
	GID    uint32
	Groups []uint32
	// Gone is closed when the caller hangs up the connection the request
	// came on (not when the daemon shuts down): what a caller ties to its
	// connection, such as a `vm run --rm` VM, ends then.
	Gone <-chan struct{} `json:"-"`
}

// InGroup reports whether the caller's primary or supplementary groups
// include gid.
func (c Caller) InGroup(gid uint32) bool {
	if c.GID == gid {
		return true
	}
	for _, g := range c.Groups {
		if g == gid {
			return true
		}
	}
	return false
}

// PeerCaller reads the credentials of the process that connected, with
// SO_PEERCRED, and its supplementary groups from /proc.
func PeerCaller(conn *net.UnixConn) (Caller, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return Caller{}, fmt.Errorf("peer credentials: %w", err)
	}
	var (
		cred    *syscall.Ucred
		credErr error
	)
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return Caller{}, fmt.Errorf("peer credentials: %w", err)
	}
	if credErr != nil {
		return Caller{}, fmt.Errorf("peer credentials: %w", credErr)
	}
	c := Caller{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}
	c.Groups, _ = procGroups(cred.Pid)
	return c, nil
}

// procGroups reads the supplementary groups of pid from /proc/PID/status.
// A caller that has exited leaves no groups, which only ever denies.
func procGroups(pid int32) ([]uint32, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(int(pid)) + "/status")
	if err != nil {
		return nil, fmt.Errorf("reading caller groups: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Groups:")
		if !ok {
			continue
		}
		var gs []uint32
		for _, field := range strings.Fields(rest) {
			g, err := strconv.ParseUint(field, 10, 32)
			if err == nil {
				gs = append(gs, uint32(g))
			}
		}
		return gs, nil
	}
	return nil, sc.Err()
}
