package workspace

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/guest"
	"github.com/banger-dev/banger/internal/model"
)

// Base is what a prepare sent: the daemon records it per VM and path, and
// export, status and the next prepare compare against it. Empty fields of
// ExportBranch/ExportCommit mean nothing was exported yet.
type Base struct {
	Path        string
	Repo        string
	Head        string
	Branch      string
	IndexCommit string
	IndexTree   string
	BaseCommit  string
	BaseTree    string
	ReadOnly    bool

	ExportBranch string
	ExportCommit string
	PreparedAt   time.Time
}

// want is the guest state a prepare left, in the form checkScript prints.
func (b *Base) want() string {
	if b == nil || b.BaseTree == "" {
		return ""
	}
	h := b.Head
	if h == "" {
		h = "none"
	}
	return h + " " + b.IndexTree + " " + b.BaseTree
}

// PrepareOptions say where and how a snapshot goes.
type PrepareOptions struct {
	Path     string
	ReadOnly bool
	// Force replaces a workspace the guest changed, or a directory banger
	// did not make.
	Force bool
	// Previous is the daemon's record of the last prepare at Path, or nil.
	Previous *Base
	// Progress is told the bytes sent so far.
	Progress func(sent, total int64)
	// Agent is banger-agent's path in the guest ("" for guest.ExecPath).
	Agent string
	// Commit, when set, is called with the Base once the guest has the
	// workspace, while the guest's lock is still held: the caller records
	// it there. Its error is Prepare's.
	Commit func(Base) error
}

// Plan is what a prepare will send.
type Plan struct {
	Snapshot    *Snapshot
	objects     []objectFile
	meta        []objectFile
	ObjectBytes int64
}

// NewPlan lists the files a snapshot's prepare sends.
func NewPlan(s *Snapshot) (*Plan, error) {
	objs, n, err := s.Repo.objectFiles()
	if err != nil {
		return nil, err
	}
	p := &Plan{Snapshot: s, objects: objs, meta: s.Repo.metaFiles(), ObjectBytes: n}
	for _, m := range p.meta {
		p.ObjectBytes += m.size
	}
	return p, nil
}

// StreamBytes is what a prepare sends, before compression.
func (p *Plan) StreamBytes() int64 { return p.ObjectBytes + p.Snapshot.Bytes }

// Needed is the guest space (bytes) the workspace takes: the git directory
// plus the checked-out files, with a margin for filesystem overhead.
func (p *Plan) Needed() int64 {
	n := p.ObjectBytes + p.Snapshot.Bytes + int64(p.Snapshot.Files)*4096
	return n + n/10
}

// Prepare sends the plan into the guest and returns the Base it recorded.
// It runs as one session under the guest's workspace lock (two prepares or
// exports on one VM serialise; a dropped connection releases it): check,
// send, swap, then o.Commit (the caller records the Base there) before the
// lock is released.
func Prepare(ctx context.Context, g Guest, p *Plan, o PrepareOptions) (Base, error) {
	if err := model.ValidateWorkspacePath(o.Path); err != nil {
		return Base{}, err
	}
	s := p.Snapshot
	agent := o.Agent
	if agent == "" {
		agent = guest.ExecPath
	}
	args := []string{LockPath, prepareScript, "banger-workspace", o.Path, o.Previous.want(), flag(o.Force), agent, s.Repo.Format, flag(o.ReadOnly)}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := runScript(ctx, g, lockWrap, args, inR, outW)
		outW.CloseWithError(io.EOF)
		done <- err
	}()
	// abort ends the session and explains how it ended; a guest that
	// refused or failed explains it better than a broken stream.
	abort := func(cause error) (Base, error) {
		inW.CloseWithError(io.ErrClosedPipe)
		go func() { _, _ = io.Copy(io.Discard, outR) }()
		gerr := <-done
		if err := ctx.Err(); err != nil {
			// Interrupted: the guest keeps what it had (the agent's
			// failure on the cut stream removed the staged copy).
			return Base{}, fmt.Errorf("preparing %s: %w", o.Path, err)
		}
		var ge *GuestError
		if cause != nil && (errors.Is(cause, io.ErrClosedPipe) || errors.As(gerr, &ge)) {
			cause = nil
		}
		if cause != nil {
			return Base{}, cause
		}
		return Base{}, explainPrepare(o.Path, gerr)
	}
	br := bufio.NewReader(outR)
	line, err := br.ReadString('\n')
	if err != nil {
		return abort(nil)
	}
	free, ok := strings.CutPrefix(strings.TrimSpace(line), "ready ")
	freeKiB, perr := strconv.ParseInt(free, 10, 64)
	if !ok || perr != nil {
		return abort(fmt.Errorf("reading the guest's free space: unexpected answer %q", Sanitize(line)))
	}
	if need := p.Needed(); need > freeKiB*1024 {
		return abort(fmt.Errorf("the workspace needs about %s in the guest but its work disk has %s free; grow the VM's disk (create it with a larger --disk) or pass --exclude for large files", human(need), human(freeKiB*1024)))
	}

	sent := make(chan error, 1)
	go func() {
		var progress func(int64)
		if o.Progress != nil {
			total := p.StreamBytes()
			progress = func(n int64) { o.Progress(n, total) }
		}
		_, err := io.WriteString(inW, "go\n")
		if err == nil {
			err = writeStream(ctx, inW, p, progress)
		}
		if err != nil {
			inW.CloseWithError(err)
		}
		sent <- err // stdin stays open on success: the lock is held until Commit
	}()
	line, err = br.ReadString('\n')
	if err != nil || line != "done\n" {
		// Closing stdin first: a writer the guest stopped reading waits.
		inW.CloseWithError(io.ErrClosedPipe)
		if serr := <-sent; serr != nil {
			return abort(fmt.Errorf("preparing %s in the guest: %w", o.Path, serr))
		}
		return abort(nil)
	}
	if err := <-sent; err != nil {
		return abort(fmt.Errorf("preparing %s in the guest: %w", o.Path, err))
	}
	b := Base{
		Path: o.Path, Repo: s.Repo.Top, Head: s.Head, Branch: s.Branch,
		IndexCommit: s.IndexCommit, IndexTree: s.IndexTree, BaseCommit: s.BaseCommit, BaseTree: s.BaseTree,
		ReadOnly: o.ReadOnly, PreparedAt: time.Now().UTC(),
	}
	if o.Previous != nil {
		// The branch the last export moved stays movable by the next one.
		b.ExportBranch, b.ExportCommit = o.Previous.ExportBranch, o.Previous.ExportCommit
	}
	var cerr error
	if o.Commit != nil {
		cerr = o.Commit(b)
	}
	inW.Close()
	go func() { _, _ = io.Copy(io.Discard, outR) }()
	if gerr := <-done; gerr != nil && cerr == nil {
		cerr = fmt.Errorf("preparing %s in the guest: %w", o.Path, gerr)
	}
	return b, cerr
}

// explainPrepare turns the guest's refusals into what the user should do.
func explainPrepare(path string, err error) error {
	var ge *GuestError
	if errors.As(err, &ge) {
		switch ge.Code {
		case exitNoGit:
			return errors.New("the guest has no git or no flock; install them in the VM (apt-get install git util-linux) or use an image that has them")
		case exitNotOurs:
			return fmt.Errorf("%s already exists in the guest and is not a workspace banger prepared; pass --force to replace it, or --path to pick another directory", path)
		case exitOldAgent:
			return errors.New("the VM's agent is older than this banger and cannot receive a workspace; restart the VM (banger vm restart) so it runs the current agent")
		case exitChanged:
			return fmt.Errorf("%w at %s since it was prepared; run `banger workspace export` first to keep that work, or pass --force to replace it", ErrGuestChanged, path)
		}
	}
	if err != nil {
		return fmt.Errorf("preparing %s in the guest: %w", path, err)
	}
	return fmt.Errorf("preparing %s in the guest: the guest ended the session early", path)
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// human formats a byte count.
func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
