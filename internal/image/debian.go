package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/banger-dev/banger/internal/host/run"
	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/rootfs"
)

// debianBuilderVersion names the build steps. Bump it whenever BuildDebian
// would produce a different tree from the same options: it is part of the
// recipe, so every cached image built by older steps is rebuilt.
const debianBuilderVersion = 2

// Defaults for DebianOptions.
const (
	DefaultDebianMirror = model.DefaultDebianMirror
	DefaultDebianSuite  = "bookworm"
)

// debianBasePackages are installed on top of mmdebstrap's minbase variant.
// The brief's set, nothing added: the agent configures network, hostname,
// DNS and keys, so no ifupdown, resolved or cloud-init; no dbus/logind (a
// slower boot and SSH login under emulation for little use in a sandbox).
var debianBasePackages = []string{
	"ca-certificates",
	"git",
	"iproute2",
	"iputils-ping",
	"less",
	"linux-image-cloud-amd64",
	"openssh-server",
	"procps",
	"systemd-sysv",
	"udev",
}

// debianPathExcludes are dpkg path filters: documentation no one can read
// (there is no man-db in the image) and translations. Copyright files stay.
var debianPathExcludes = []string{
	"--dpkgopt=path-exclude=/usr/share/man/*",
	"--dpkgopt=path-exclude=/usr/share/info/*",
	"--dpkgopt=path-exclude=/usr/share/doc/*",
	"--dpkgopt=path-include=/usr/share/doc/*/copyright",
	"--dpkgopt=path-exclude=/usr/share/locale/*",
	"--dpkgopt=path-include=/usr/share/locale/locale.alias",
}

// DebianOptions say what BuildDebian builds and where.
type DebianOptions struct {
	Mirror   string   // default DefaultDebianMirror
	Suite    string   // default DefaultDebianSuite
	Packages []string // extra packages beyond the base set
	// WorkDir is scratch space, on the same filesystem as OutDir. BuildDebian
	// works in a new directory inside it (creating WorkDir if needed) and
	// removes what it created. Default: a temporary directory beside OutDir.
	WorkDir string
	// OutDir receives the artifacts. It must be absent or empty; it is
	// created, and on failure emptied (and removed if BuildDebian made it).
	OutDir string
}

// Artifacts are the files of a built image.
type Artifacts struct {
	Kernel        string `json:"kernel"`           // OutDir/vmlinuz, a bzImage
	Initrd        string `json:"initrd,omitempty"` // an initramfs of the image's own, unpacked before banger's
	ModulesDir    string `json:"modules_dir"`      // OutDir/modules/<kver>, with modules.dep
	KernelVersion string `json:"kernel_version"`   // e.g. 6.1.0-50-cloud-amd64
	Rootfs        string `json:"rootfs"`           // OutDir/rootfs.ext4, label banger-root
	SizeBytes     int64  `json:"size_bytes"`       // apparent size of all the above
	Digest        string `json:"digest"`           // "sha256:<hex>" of the rootfs file
	// Layers are an OCI image's layer digests (none for a built image).
	Layers []string `json:"layers,omitempty"`
}

// RootfsLabel is the ext4 label of every rootfs BuildDebian writes.
const RootfsLabel = "banger-root"

var (
	debianPackageRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	debianSuiteRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*$`)
)

// withDefaults fills in defaults and normalises the options: trailing
// slashes off the mirror, packages trimmed, deduplicated and sorted.
func (o DebianOptions) withDefaults() DebianOptions {
	if o.Mirror = strings.TrimRight(strings.TrimSpace(o.Mirror), "/"); o.Mirror == "" {
		o.Mirror = DefaultDebianMirror
	}
	if o.Suite = strings.TrimSpace(o.Suite); o.Suite == "" {
		o.Suite = DefaultDebianSuite
	}
	seen := map[string]bool{}
	var pkgs []string
	for _, p := range o.Packages {
		if p = strings.TrimSpace(p); p != "" && !seen[p] {
			seen[p] = true
			pkgs = append(pkgs, p)
		}
	}
	sort.Strings(pkgs)
	o.Packages = pkgs
	return o
}

// validate checks what reaches mmdebstrap's command line. A package name
// with a comma would smuggle packages into --include, and a mirror with
// spaces is read by mmdebstrap as a whole sources.list line.
func (o DebianOptions) validate() error {
	if !debianSuiteRE.MatchString(o.Suite) {
		return fmt.Errorf("invalid debian suite %q", o.Suite)
	}
	u, err := url.Parse(o.Mirror)
	if err != nil || strings.ContainsAny(o.Mirror, " \t\r\n") || u.Host == "" && u.Scheme != "file" ||
		u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "file" {
		return fmt.Errorf("invalid debian mirror %q: want an http://, https:// or file:// URL", o.Mirror)
	}
	for _, p := range o.Packages {
		if !debianPackageRE.MatchString(p) {
			return fmt.Errorf("invalid debian package name %q", p)
		}
	}
	return nil
}

// allPackages is the base set plus o's extras, sorted and deduplicated.
func (o DebianOptions) allPackages() []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range append(append([]string{}, debianBasePackages...), o.Packages...) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// Recipe is a stable description of what BuildDebian makes from o: suite,
// mirror, the sorted package set and the builder version. Work and output
// directories are not part of it. Its sha256 names a cache entry.
func (o DebianOptions) Recipe() string { return o.recipe(debianBuilderVersion) }

func (o DebianOptions) recipe(version int) string {
	o = o.withDefaults()
	return fmt.Sprintf("banger-debian-builder v%d\nsuite %s\nmirror %s\npackages %s\n",
		version, o.Suite, o.Mirror, strings.Join(o.allPackages(), ","))
}

// RecipeKey is the short hash naming o's cache entry.
func (o DebianOptions) RecipeKey() string {
	sum := sha256.Sum256([]byte(o.Recipe()))
	return hex.EncodeToString(sum[:])[:16]
}

// Build phases, as passed to the progress callback.
const (
	PhaseDownloading = "downloading packages"
	PhaseConfiguring = "configuring"
	PhaseWriting     = "writing rootfs"
)

// tools are the seams BuildDebian reaches the host through; tests swap
// them instead of touching the process's PATH.
type tools struct {
	lookPath func(name string) (string, error)
	output   func(ctx context.Context, argv []string, opts ...run.Option) ([]byte, error)
	euid     func() int
	// minRootfs is the smallest rootfs image written (tests make small ones).
	minRootfs int64
}

var hostTools = tools{lookPath: run.LookPath, output: run.Output, euid: os.Geteuid, minRootfs: rootfs.MinImageSize}

// BuildDebian bootstraps a Debian tree with mmdebstrap, prepares it for
// banger (see prepareTree) and writes its kernel, modules and an ext4
// rootfs to opts.OutDir. progress, if not nil, is told each phase. It
// needs root. On failure or cancellation OutDir and WorkDir hold nothing
// it made.
func BuildDebian(ctx context.Context, opts DebianOptions, progress func(phase string)) (Artifacts, error) {
	return hostTools.buildDebian(ctx, opts, progress)
}

func (t tools) buildDebian(ctx context.Context, opts DebianOptions, progress func(string)) (art Artifacts, err error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return Artifacts{}, err
	}
	if opts.OutDir == "" {
		return Artifacts{}, errors.New("building debian image: no output directory")
	}
	if progress == nil {
		progress = func(string) {}
	}
	mmdebstrap, err := t.lookPath("mmdebstrap")
	if err != nil {
		return Artifacts{}, errors.New("mmdebstrap not found; install it: apt-get install mmdebstrap")
	}
	mkfs, err := t.lookPath("mkfs.ext4")
	if err != nil {
		return Artifacts{}, errors.New("mkfs.ext4 not found; install it: apt-get install e2fsprogs")
	}
	if t.euid() != 0 {
		return Artifacts{}, errors.New("building the debian image needs root (mmdebstrap --mode=root)")
	}
	if err := ctx.Err(); err != nil {
		return Artifacts{}, fmt.Errorf("building debian image: %w", err)
	}

	outDir, err := filepath.Abs(opts.OutDir)
	if err != nil {
		return Artifacts{}, fmt.Errorf("output directory: %w", err)
	}
	madeOut, err := makeEmptyDir(outDir)
	if err != nil {
		return Artifacts{}, err
	}
	work, cleanWork, err := makeWorkDir(opts.WorkDir, outDir)
	if err != nil {
		if madeOut {
			os.Remove(outDir)
		}
		return Artifacts{}, err
	}
	defer func() {
		if cerr := cleanWork(); cerr != nil && err == nil {
			err = cerr
		}
		if err != nil {
			if cerr := emptyDir(outDir, madeOut); cerr != nil {
				err = fmt.Errorf("%w (and cleaning up: %w)", err, cerr)
			}
			art = Artifacts{}
		}
	}()

	root := filepath.Join(work, "root")
	progress(PhaseDownloading)
	if err := t.mmdebstrap(ctx, mmdebstrap, opts, root); err != nil {
		return Artifacts{}, err
	}

	progress(PhaseConfiguring)
	if err := ctx.Err(); err != nil {
		return Artifacts{}, fmt.Errorf("building debian image: %w", err)
	}
	tree, err := rootfs.Open(root)
	if err != nil {
		return Artifacts{}, err
	}
	defer tree.Close()
	kver, err := kernelVersion(tree)
	if err != nil {
		return Artifacts{}, err
	}
	art = Artifacts{
		Kernel:        filepath.Join(outDir, "vmlinuz"),
		ModulesDir:    filepath.Join(outDir, "modules", kver),
		KernelVersion: kver,
		Rootfs:        filepath.Join(outDir, "rootfs.ext4"),
	}
	if err := takeKernel(tree, kver, art.Kernel); err != nil {
		return Artifacts{}, err
	}
	if err := prepareTree(tree); err != nil {
		return Artifacts{}, err
	}

	progress(PhaseWriting)
	if err := ctx.Err(); err != nil {
		return Artifacts{}, fmt.Errorf("building debian image: %w", err)
	}
	if err := t.writeExt4(ctx, mkfs, root, art.Rootfs, RootfsLabel); err != nil {
		return Artifacts{}, err
	}
	// The rootfs keeps its own /lib/modules (the guest loads late modules
	// from it, and it is in the image now); the host's copy is only read
	// when making initramfs images, so the tree's can simply move.
	if err := os.MkdirAll(filepath.Dir(art.ModulesDir), 0o755); err != nil {
		return Artifacts{}, fmt.Errorf("copying kernel modules: %w", err)
	}
	if err := tree.MoveOut(modulesRoot(tree)+"/"+kver, art.ModulesDir); err != nil {
		return Artifacts{}, fmt.Errorf("copying kernel modules: %w", err)
	}
	if err := t.ensureModulesDep(ctx, work, art.ModulesDir, kver); err != nil {
		return Artifacts{}, err
	}
	if art.Digest, err = fileDigest(art.Rootfs); err != nil {
		return Artifacts{}, err
	}
	if art.SizeBytes, err = apparentSize(outDir); err != nil {
		return Artifacts{}, err
	}
	return art, nil
}

// mmdebstrap runs mmdebstrap into root. It runs in its own mount and PID
// namespaces (when unshare is there): the /proc, /sys and /dev mounts it
// makes inside the tree are never visible on the host, and killing it on
// cancellation kills apt and dpkg with it, so nothing keeps writing into a
// tree being removed and no removal can wander into a bind-mounted /sys.
func (t tools) mmdebstrap(ctx context.Context, mmdebstrap string, opts DebianOptions, root string) error {
	argv := []string{mmdebstrap, "--mode=root", "--variant=minbase", "--format=directory",
		"--include=" + strings.Join(opts.allPackages(), ",")}
	argv = append(argv, debianPathExcludes...)
	argv = append(argv, opts.Suite, root, opts.Mirror)
	if unshare, err := t.lookPath("unshare"); err == nil {
		argv = append([]string{unshare, "--mount", "--pid", "--kill-child"}, argv...)
	}
	// INITRD=No: the kernel's postinst skips making an initrd, which banger
	// never uses (it generates its own) and which costs ~7 s.
	_, err := t.output(ctx, argv, run.Env("INITRD=No", "DEBIAN_FRONTEND=noninteractive"))
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("building debian image: %w", ctx.Err())
	}
	return explainMmdebstrap(err, opts)
}

var (
	unreachableRE = regexp.MustCompile(`(?i)could not resolve|temporary failure resolving|could not connect|` +
		`connection refused|connection timed out|unable to connect|no route to host|network is unreachable|` +
		`could not open socket|connection failed|failed to fetch [^ ]*\s+(?:[^ ]* )?(?:timeout|timed out)`)
	notFoundRE = regexp.MustCompile(`(?i)failed to fetch \S*/dists/\S*release\S*\s+404`)
	noPkgRE    = regexp.MustCompile(`(?i)unable to locate package (\S+)|package '?(\S+?)'? has no installation candidate`)
)

// explainMmdebstrap turns mmdebstrap's failure into a sentence a user can
// act on, keeping the original error (with its output tail) wrapped.
func explainMmdebstrap(err error, opts DebianOptions) error {
	var out string
	var re *run.Error
	if errors.As(err, &re) {
		out = re.Output
	}
	switch {
	case unreachableRE.MatchString(out):
		return fmt.Errorf("debian mirror %s is unreachable (check the network, a proxy, or pass another mirror): %w", opts.Mirror, err)
	case notFoundRE.MatchString(out):
		return fmt.Errorf("debian mirror %s has no suite %q: %w", opts.Mirror, opts.Suite, err)
	case noPkgRE.MatchString(out):
		m := noPkgRE.FindStringSubmatch(out)
		return fmt.Errorf("debian suite %s has no package %s: %w", opts.Suite, strings.Trim(m[1]+m[2], "'"), err)
	}
	return fmt.Errorf("running mmdebstrap: %w", err)
}

// makeEmptyDir creates dir (and parents) or checks that it is empty. made
// says whether it created dir.
func makeEmptyDir(dir string) (made bool, err error) {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return false, fmt.Errorf("creating output directory: %w", err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("output directory: %w", err)
	case len(entries) > 0:
		return false, fmt.Errorf("output directory %s is not empty", dir)
	}
	return false, nil
}

// makeWorkDir makes a fresh scratch directory inside workDir (default:
// beside outDir, on its filesystem) and returns a func removing what it
// made: the scratch directory, and workDir too if it created it.
func makeWorkDir(workDir, outDir string) (string, func() error, error) {
	parent, made := workDir, false
	if parent == "" {
		parent = filepath.Dir(outDir)
	} else {
		var err error
		if parent, err = filepath.Abs(parent); err != nil {
			return "", nil, fmt.Errorf("work directory: %w", err)
		}
		if _, err := os.Stat(parent); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(parent, 0o755); err != nil {
				return "", nil, fmt.Errorf("creating work directory: %w", err)
			}
			made = true
		}
	}
	dir, err := os.MkdirTemp(parent, ".banger-debian-")
	if err != nil {
		if made {
			os.Remove(parent)
		}
		return "", nil, fmt.Errorf("creating work directory: %w", err)
	}
	return dir, func() error {
		if err := removeAllUnmounted(dir); err != nil {
			return err
		}
		if made {
			if err := os.Remove(parent); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("removing work directory: %w", err)
			}
		}
		return nil
	}, nil
}

// emptyDir removes everything in dir, and dir itself if remove is set.
func emptyDir(dir string, remove bool) error {
	if remove {
		return removeAllUnmounted(dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("emptying %s: %w", dir, err)
	}
	for _, e := range entries {
		if err := removeAllUnmounted(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hashing rootfs: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing rootfs: %w", err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// apparentSize sums the sizes of the regular files under dir.
func apparentSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("measuring artifacts: %w", err)
	}
	return n, nil
}
