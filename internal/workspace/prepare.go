package workspace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

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

// Needed is the guest space (bytes) the workspace takes: the git directory
// plus the checked-out files, with a margin for filesystem overhead.
func (p *Plan) Needed() int64 {
	n := p.ObjectBytes + p.Snapshot.Bytes + int64(p.Snapshot.Files)*4096
	return n + n/10
}

// Prepare sends the plan into the guest and returns the Base to record.
// The caller holds the guest's workspace Lease.
func Prepare(ctx context.Context, g Guest, p *Plan, o PrepareOptions) (Base, error) {
	if err := model.ValidateWorkspacePath(o.Path); err != nil {
		return Base{}, err
	}
	s := p.Snapshot
	force := "0"
	if o.Force {
		force = "1"
	}
	var out strings.Builder
	err := runScript(ctx, g, checkScript, []string{o.Path, o.Previous.want(), force}, nil, &limited{w: &out, n: 256})
	var ge *GuestError
	if errors.As(err, &ge) {
		switch ge.Code {
		case exitNoGit:
			return Base{}, errors.New("the guest has no git; install it in the VM (apt-get install git) or use an image that has it")
		case exitNotOurs:
			return Base{}, fmt.Errorf("%s already exists in the guest and is not a workspace banger prepared; pass --force to replace it, or --path to pick another directory", o.Path)
		case exitChanged:
			return Base{}, fmt.Errorf("%w at %s since it was prepared; run `banger workspace export` first to keep that work, or pass --force to replace it", ErrGuestChanged, o.Path)
		}
	}
	if err != nil {
		return Base{}, err
	}
	freeKiB, err := strconv.ParseInt(strings.TrimSpace(out.String()), 10, 64)
	if err != nil {
		return Base{}, fmt.Errorf("reading the guest's free space: unexpected answer %q", Sanitize(out.String()))
	}
	if need := p.Needed(); need > freeKiB*1024 {
		return Base{}, fmt.Errorf("the workspace needs about %s in the guest but its work disk has %s free; grow the VM's disk (create it with a larger --disk) or pass --exclude for large files", human(need), human(freeKiB*1024))
	}

	ro := "0"
	if o.ReadOnly {
		ro = "1"
	}
	pr, pw := io.Pipe()
	total := p.ObjectBytes
	go func() {
		cw := &countingWriter{w: pw}
		if o.Progress != nil {
			cw.progress = func(n int64) { o.Progress(n, total) }
		}
		pw.CloseWithError(writeTar(ctx, cw, p.objects, p.meta))
	}()
	u := s.Upstream
	args := []string{o.Path, s.Repo.Format, s.Head, s.Branch, s.IndexCommit, s.BaseCommit,
		u.Remote, u.URL, u.Merge, u.Commit, s.UserName, s.UserEmail, ro}
	err = runScript(ctx, g, receiveScript, args, pr, io.Discard)
	pr.CloseWithError(io.ErrClosedPipe)
	if err != nil {
		return Base{}, fmt.Errorf("preparing %s in the guest: %w", o.Path, err)
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
	return b, nil
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
