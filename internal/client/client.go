// Package client is the typed client of bangerd's API: one function per
// RPC method, connection failures turned into messages that say what to
// do, and starting the daemon when it is not running.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/banger-dev/banger/internal/api"
	"github.com/banger-dev/banger/internal/rpc"
)

// Error is an error the daemon returned, with its JSON-RPC code.
type Error = rpc.Error

// ErrNotRunning means nothing answers on the socket.
var ErrNotRunning = errors.New("bangerd is not running")

// Client talks to one daemon socket.
type Client struct {
	Socket string
	rpc    rpc.Client
}

// New makes a client for the daemon at socket.
func New(socket string) *Client {
	return &Client{Socket: socket, rpc: rpc.Client{Path: socket}}
}

func (c *Client) call(ctx context.Context, method string, params, result any) error {
	return c.explain(c.rpc.Call(ctx, method, params, result))
}

// explain turns failures to reach the socket into what to do about them.
func (c *Client) explain(err error) error {
	var rerr *rpc.Error
	switch {
	case err == nil, errors.As(err, &rerr):
		return err
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w on %s", ErrNotRunning, c.Socket)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("permission denied on socket %s: only root and members of the daemon's group (default \"banger\") may use it; run `sudo usermod -aG banger $USER` and log in again", c.Socket)
	}
	return err
}

// Status is daemon.status.
func (c *Client) Status(ctx context.Context) (api.DaemonStatus, error) {
	var out api.DaemonStatus
	return out, c.call(ctx, api.MethodDaemonStatus, nil, &out)
}

// Shutdown is daemon.shutdown.
func (c *Client) Shutdown(ctx context.Context, teardown bool) error {
	return c.call(ctx, api.MethodDaemonShutdown, api.DaemonShutdownParams{Teardown: teardown}, nil)
}

// Reload is daemon.reload.
func (c *Client) Reload(ctx context.Context) (api.DaemonReloadResult, error) {
	var out api.DaemonReloadResult
	return out, c.call(ctx, api.MethodDaemonReload, nil, &out)
}

// VMCreate is vm.create.
func (c *Client) VMCreate(ctx context.Context, p api.VMCreateParams) (api.VMCreateResult, error) {
	var out api.VMCreateResult
	return out, c.call(ctx, api.MethodVMCreate, p, &out)
}

// VMList is vm.list.
func (c *Client) VMList(ctx context.Context) ([]api.VM, error) {
	var out []api.VM
	return out, c.call(ctx, api.MethodVMList, nil, &out)
}

// VMShow is vm.show.
func (c *Client) VMShow(ctx context.Context, name string) (api.VM, error) {
	var out api.VM
	return out, c.call(ctx, api.MethodVMShow, api.VMRef{Name: name}, &out)
}

// VMDelete is vm.delete.
func (c *Client) VMDelete(ctx context.Context, name string, force bool) error {
	return c.call(ctx, api.MethodVMDelete, api.VMDeleteParams{Name: name, Force: force}, nil)
}

// VMStart is vm.start.
func (c *Client) VMStart(ctx context.Context, name string) (api.VM, error) {
	var out api.VM
	return out, c.call(ctx, api.MethodVMStart, api.VMRef{Name: name}, &out)
}

// VMStop is vm.stop.
func (c *Client) VMStop(ctx context.Context, name string) (api.VM, error) {
	var out api.VM
	return out, c.call(ctx, api.MethodVMStop, api.VMRef{Name: name}, &out)
}

// VMRestart is vm.restart.
func (c *Client) VMRestart(ctx context.Context, name string) (api.VM, error) {
	var out api.VM
	return out, c.call(ctx, api.MethodVMRestart, api.VMRef{Name: name}, &out)
}

// OpStatus is op.status.
func (c *Client) OpStatus(ctx context.Context, id string) (api.Operation, error) {
	var out api.Operation
	return out, c.call(ctx, api.MethodOpStatus, api.OpRef{ID: id}, &out)
}

// OpCancel is op.cancel.
func (c *Client) OpCancel(ctx context.Context, id string) (api.Operation, error) {
	var out api.Operation
	return out, c.call(ctx, api.MethodOpCancel, api.OpRef{ID: id}, &out)
}

// OpList is op.list.
func (c *Client) OpList(ctx context.Context) ([]api.Operation, error) {
	var out []api.Operation
	return out, c.call(ctx, api.MethodOpList, nil, &out)
}

// VMSSHInfo is vm.ssh_info.
func (c *Client) VMSSHInfo(ctx context.Context, name string) (api.SSHInfo, error) {
	var out api.SSHInfo
	return out, c.call(ctx, api.MethodVMSSHInfo, api.VMRef{Name: name}, &out)
}

// VMLogs is vm.logs.
// VMTunnel connects to a guest TCP port of a running VM through the
// daemon (for a VM without a network, through the agent's tunnel).
func (c *Client) VMTunnel(ctx context.Context, name string, port int) (*net.UnixConn, error) {
	conn, err := c.rpc.Stream(ctx, api.MethodVMTunnel, api.VMTunnelParams{Name: name, Port: port}, nil)
	if err != nil {
		return nil, c.explain(err)
	}
	return conn, nil
}

// ImageImport streams an image archive (a docker save tarball or an OCI
// layout tar) to the daemon and returns the operation importing it.
func (c *Client) ImageImport(ctx context.Context, r io.Reader, name string) (api.Operation, error) {
	return c.upload(ctx, api.MethodImageImport, name, r)
}

// ImageRegister streams a registration (a tar of vmlinuz, rootfs.ext4 and
// maybe modules/) and returns the operation checking and registering it.
func (c *Client) ImageRegister(ctx context.Context, r io.Reader, name string) (api.Operation, error) {
	return c.upload(ctx, api.MethodImageRegister, name, r)
}

// upload sends r on a stream method's connection, half-closes, and reads
// the one line the daemon ends it with.
// ImageLoad is image.load: it sends a bundle (read by the caller as the
// user) to become image name.
func (c *Client) ImageLoad(ctx context.Context, r io.Reader, name string) (api.Operation, error) {
	return c.upload(ctx, api.MethodImageLoad, name, r)
}

// ImageExport is image.export: image name as a bundle, written to w. It
// returns nil only when the whole bundle arrived.
func (c *Client) ImageExport(ctx context.Context, name string, w io.Writer) error {
	conn, err := c.rpc.Stream(ctx, api.MethodImageExport, api.ImageImportParams{Name: name}, nil)
	if err != nil {
		return c.explain(err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := conn.CloseWrite(); err != nil {
		return fmt.Errorf("asking for the bundle: %w", err)
	}
	if err := rpc.ReadChunks(conn, w); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("exporting image %s: %w", name, err)
	}
	return nil
}

func (c *Client) upload(ctx context.Context, method, name string, r io.Reader) (api.Operation, error) {
	conn, err := c.rpc.Stream(ctx, method, api.ImageImportParams{Name: name}, nil)
	if err != nil {
		return api.Operation{}, c.explain(err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	_, serr := io.Copy(conn, r)
	if serr == nil {
		serr = conn.CloseWrite()
	}
	// A daemon that refuses what it is sent (a corrupt bundle) answers and
	// stops reading: its answer says more than the broken pipe.
	var res api.ImageImportResult
	if err := json.NewDecoder(conn).Decode(&res); err != nil {
		if serr != nil {
			return api.Operation{}, fmt.Errorf("sending the files: %w", serr)
		}
		return api.Operation{}, fmt.Errorf("reading the daemon's answer: %w", err)
	}
	if res.Error != nil {
		code := res.Code
		if code == 0 {
			code = api.CodeInternal
		}
		return api.Operation{}, &Error{Code: code, Message: *res.Error}
	}
	if serr != nil {
		return api.Operation{}, fmt.Errorf("sending the files: %w", serr)
	}
	if res.Operation == nil {
		return api.Operation{}, errors.New("the daemon started no import")
	}
	return *res.Operation, nil
}

// ImageCatalog is image.catalog.
func (c *Client) ImageCatalog(ctx context.Context) (api.ImageCatalog, error) {
	var out api.ImageCatalog
	return out, c.call(ctx, api.MethodImageCatalog, api.Empty{}, &out)
}

// ImagePrune is image.prune.
func (c *Client) ImagePrune(ctx context.Context, all bool) (api.ImagePruneResult, error) {
	var out api.ImagePruneResult
	return out, c.call(ctx, api.MethodImagePrune, api.ImagePruneParams{All: all}, &out)
}

func (c *Client) VMLogs(ctx context.Context, p api.VMLogsParams) (api.VMLogs, error) {
	var out api.VMLogs
	return out, c.call(ctx, api.MethodVMLogs, p, &out)
}

// ImageList is image.list.
func (c *Client) ImageList(ctx context.Context) ([]api.Image, error) {
	var out []api.Image
	return out, c.call(ctx, api.MethodImageList, nil, &out)
}

// ImageShow is image.show.
func (c *Client) ImageShow(ctx context.Context, name string) (api.Image, error) {
	var out api.Image
	return out, c.call(ctx, api.MethodImageShow, api.ImageRef{Name: name}, &out)
}

// ImageDelete is image.delete.
func (c *Client) ImageDelete(ctx context.Context, name string) error {
	return c.call(ctx, api.MethodImageDelete, api.ImageRef{Name: name}, nil)
}

// ImagePull is image.pull: it starts an operation.
func (c *Client) ImagePull(ctx context.Context, p api.ImagePullParams) (api.Operation, error) {
	var out api.Operation
	return out, c.call(ctx, api.MethodImagePull, p, &out)
}

// ImagePromote is image.promote: it starts an operation.
func (c *Client) ImagePromote(ctx context.Context, vm, name string) (api.Operation, error) {
	var out api.Operation
	return out, c.call(ctx, api.MethodImagePromote, api.ImagePromoteParams{VM: vm, Name: name}, &out)
}

// VMStats is vm.stats.
func (c *Client) VMStats(ctx context.Context, name string) (api.VMStats, error) {
	var out api.VMStats
	return out, c.call(ctx, api.MethodVMStats, api.VMRef{Name: name}, &out)
}

// Doctor is doctor: the daemon's checks of this host.
func (c *Client) Doctor(ctx context.Context) ([]api.DoctorCheck, error) {
	var out []api.DoctorCheck
	return out, c.call(ctx, api.MethodDoctor, nil, &out)
}

// WorkspaceRecord is workspace.record.
func (c *Client) WorkspaceRecord(ctx context.Context, w api.Workspace) (api.Workspace, error) {
	var out api.Workspace
	return out, c.call(ctx, api.MethodWorkspaceRecord, w, &out)
}

// WorkspaceShow is workspace.show.
func (c *Client) WorkspaceShow(ctx context.Context, vm, path string) (api.Workspace, error) {
	var out api.Workspace
	return out, c.call(ctx, api.MethodWorkspaceShow, api.WorkspaceRef{VM: vm, Path: path}, &out)
}

// WorkspaceList is workspace.list.
func (c *Client) WorkspaceList(ctx context.Context, vm string) ([]api.Workspace, error) {
	var out []api.Workspace
	return out, c.call(ctx, api.MethodWorkspaceList, api.VMRef{Name: vm}, &out)
}

// Session is one connection kept open for calls whose effects last as long
// as it does: a VM created on it with AutoRemove is deleted by the daemon
// when the session closes, including when this process dies.
type Session struct{ conn *rpc.Conn }

// Session opens a session.
func (c *Client) Session(ctx context.Context) (*Session, error) {
	conn, err := rpc.Dial(ctx, c.Socket)
	if err != nil {
		return nil, c.explain(err)
	}
	return &Session{conn: conn}, nil
}

// Close ends the session.
func (s *Session) Close() error { return s.conn.Close() }

// VMCreate is vm.create on the session.
func (s *Session) VMCreate(ctx context.Context, p api.VMCreateParams) (api.VMCreateResult, error) {
	var out api.VMCreateResult
	return out, s.conn.Call(ctx, api.MethodVMCreate, p, &out)
}

// VMSnapshot is vm.snapshot.
func (c *Client) VMSnapshot(ctx context.Context, vm, name string) (api.Snapshot, error) {
	var out api.Snapshot
	return out, c.call(ctx, api.MethodVMSnapshot, api.VMSnapshotParams{Name: vm, Snapshot: name}, &out)
}

// VMSnapshotList is vm.snapshot.list.
func (c *Client) VMSnapshotList(ctx context.Context, vm string) ([]api.Snapshot, error) {
	var out []api.Snapshot
	return out, c.call(ctx, api.MethodVMSnapshotList, api.VMRef{Name: vm}, &out)
}

// VMSnapshotDelete is vm.snapshot.delete.
func (c *Client) VMSnapshotDelete(ctx context.Context, vm, name string) error {
	return c.call(ctx, api.MethodVMSnapshotDelete, api.VMSnapshotParams{Name: vm, Snapshot: name}, nil)
}

// VMRestore is vm.restore.
func (c *Client) VMRestore(ctx context.Context, vm, name string) (api.VM, error) {
	var out api.VM
	return out, c.call(ctx, api.MethodVMRestore, api.VMSnapshotParams{Name: vm, Snapshot: name}, &out)
}

// VMFork is vm.fork.
func (c *Client) VMFork(ctx context.Context, p api.VMForkParams) ([]api.VM, error) {
	var out []api.VM
	return out, c.call(ctx, api.MethodVMFork, p, &out)
}

// VMSet is vm.set.
func (c *Client) VMSet(ctx context.Context, p api.VMSetParams) (api.VM, error) {
	var out api.VM
	return out, c.call(ctx, api.MethodVMSet, p, &out)
}
