package daemon

import (
	"context"
	"encoding/json"
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
	"github.com/banger-dev/banger/internal/tunnel"
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
	info := api.SSHInfo{User: guestssh.User, PrivateKey: string(key), HostKey: hostKey}
	if v.NetworkMode() == model.NetworkNone {
		info.Tunnel = true
	} else {
		info.Address = net.JoinHostPort(v.IP, "22")
	}
	return info, nil
}

// vmTunnel connects the caller's connection to a TCP port of a running
// guest, through the agent's tunnel for a VM without a network. A VM
// still booting is waited for, as ssh_info does.
func (d *Daemon) vmTunnel(ctx context.Context, _ rpc.Caller, raw json.RawMessage) (any, func(rpc.Stream), error) {
	var p api.VMTunnelParams
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, nil, model.Errorf(model.ErrInvalid, "invalid params: %v", err)
	}
	if p.Port < 1 || p.Port > 65535 {
		return nil, nil, model.Errorf(model.ErrInvalid, "port %d is not a TCP port (1-65535)", p.Port)
	}
	wctx, cancel := context.WithTimeout(ctx, d.config().BootTimeout+30*time.Second)
	defer cancel()
	v, err := d.vms.WaitRunning(wctx, p.Name)
	if err != nil {
		return nil, nil, err
	}
	v, hd, err := d.vms.Handles(ctx, v.ID)
	if err != nil {
		return nil, nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	g, err := d.boot.DialGuest(dctx, v, hd, p.Port)
	if err != nil {
		return nil, nil, model.Errorf(model.ErrUnavailable, "vm %s: connecting to guest port %d: %v", v.Name, p.Port, err)
	}
	return api.Empty{}, func(c rpc.Stream) {
		defer g.Close()
		tunnel.Join(c, g)
	}, nil
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
