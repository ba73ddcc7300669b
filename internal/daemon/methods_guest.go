package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"time"

	"github.com/banger-dev/banger/internal/api"
	"github.com/banger-dev/banger/internal/guestssh"
	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/rpc"
)

func (d *Daemon) vmSSHInfo(ctx context.Context, _ rpc.Caller, p api.VMRef) (api.SSHInfo, error) {
	// A VM that is still being created or booted is waited for, as long
	// as a boot may take.
	wctx, cancel := context.WithTimeout(ctx, d.config().BootTimeout+30*time.Second)
	defer cancel()
	v, err := d.vms.WaitRunning(wctx, p.Name)
	if err != nil {
		return api.SSHInfo{}, err
	}
	hostKey, err := d.boot.HostKey(v)
	if err != nil {
		return api.SSHInfo{}, err
	}
	key, err := os.ReadFile(d.layout.SSHKey())
	if err != nil {
		return api.SSHInfo{}, fmt.Errorf("reading the daemon's ssh key: %w", err)
	}
	return api.SSHInfo{Address: net.JoinHostPort(v.IP, "22"), User: guestssh.User, PrivateKey: string(key), HostKey: hostKey}, nil
}

const maxLogChunk = 256 << 10

func (d *Daemon) vmLogs(ctx context.Context, _ rpc.Caller, p api.VMLogsParams) (api.VMLogs, error) {
	if p.Offset < 0 {
		return api.VMLogs{}, model.Errorf(model.ErrInvalid, "offset %d is negative; give 0 or an offset a previous call returned as next", p.Offset)
	}
	v, err := d.vms.Get(ctx, p.Name)
	if err != nil {
		return api.VMLogs{}, err
	}
	out := api.VMLogs{Next: p.Offset, Running: v.State == model.StateRunning || v.State == model.StateStarting}
	f, err := os.Open(d.layout.VMFile(v.ID, "console.log"))
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		d.log.Warn("opening console log", "vm", v.Name, "err", err)
		return api.VMLogs{}, fmt.Errorf("opening the console log of vm %s failed (the daemon's log has the details)", v.Name)
	}
	defer f.Close()
	limit := p.Max
	if limit <= 0 || limit > maxLogChunk {
		limit = maxLogChunk
	}
	buf := make([]byte, limit)
	n, err := f.ReadAt(buf, p.Offset)
	if err != nil && !errors.Is(err, io.EOF) {
		d.log.Warn("reading console log", "vm", v.Name, "err", err)
		return api.VMLogs{}, fmt.Errorf("reading the console log of vm %s failed (the daemon's log has the details)", v.Name)
	}
	out.Data = string(buf[:n])
	out.Next = p.Offset + int64(n)
	return out, nil
}

func (d *Daemon) vmStats(ctx context.Context, _ rpc.Caller, p api.VMRef) (api.VMStats, error) {
	v, st, err := d.vms.Stats(ctx, p.Name)
	if err != nil {
		return api.VMStats{}, err
	}
	return api.VMStats{
		Name: v.Name, Driver: v.Driver, VCPUs: v.VCPUs, MemoryMiB: v.MemoryMiB,
		CPUSeconds: st.CPUSeconds, MemoryRSSBytes: st.MemoryRSSBytes,
		DiskReadBytes: st.DiskReadBytes, DiskWriteBytes: st.DiskWriteBytes,
		NetRxBytes: st.NetRxBytes, NetTxBytes: st.NetTxBytes,
	}, nil
}
