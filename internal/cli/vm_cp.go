package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/internal/archive"
	"github.com/banger-dev/banger/internal/workspace"
)

// cpEnd is one side of `vm cp`: a guest path (vm set), a host path, or
// "-" (a tar stream on stdin or stdout).
type cpEnd struct {
	vm, path string
	stream   bool
}

// parseCpEnd reads NAME:PATH as a guest path. A host path with a colon
// before its first slash can be written ./a:b, as with docker cp.
func parseCpEnd(arg string) cpEnd {
	if arg == "-" {
		return cpEnd{stream: true}
	}
	if i := strings.IndexByte(arg, ':'); i > 0 && !strings.Contains(arg[:i], "/") {
		return cpEnd{vm: arg[:i], path: arg[i+1:]}
	}
	return cpEnd{path: arg}
}

// contentsOnly reports whether p ends in "/." (copy what is in the
// directory, not the directory).
func contentsOnly(p string) bool { return p == "." || strings.HasSuffix(p, "/.") }

func (a *app) vmCpCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cp SRC DST",
		Short: "Copy files and directories between a VM and the host",
		Long: "One side is NAME:PATH in a VM (relative paths start at the login user's home), the\n" +
			"other a host path or - for a tar stream on stdin/stdout. As docker cp: a directory\n" +
			"DST that exists receives SRC under SRC's name; otherwise the copy is named DST;\n" +
			"SRC/. copies a directory's contents. Modes, symlinks (never followed) and hard\n" +
			"links are kept; files belong to the VM's login user in the guest and to you on\n" +
			"the host, which never writes outside DST whatever the guest sends.",
		Example: "  banger vm cp ./src dev:/work/\n" +
			"  banger vm cp dev:/work/out ./out\n" +
			"  banger vm cp dev:/var/log/. ./guest-logs\n" +
			"  tar c . | banger vm cp - dev:/work\n" +
			"  banger vm cp dev:/etc - | tar t",
		Args:              exactArgs(2, "SRC and DST"),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			src, dst := parseCpEnd(args[0]), parseCpEnd(args[1])
			switch {
			case (src.vm == "") == (dst.vm == ""):
				return usagef(cmd, "exactly one of SRC and DST must be in a VM, written NAME:PATH")
			case src.vm != "" && src.path == "", dst.vm != "" && dst.path == "":
				return usagef(cmd, "give a path after the VM name: NAME:PATH")
			}
			ctx := cmd.Context()
			name := src.vm + dst.vm
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			info, err := c.VMSSHInfo(ctx, name)
			if err != nil {
				return err
			}
			if dst.vm != "" && !src.stream {
				// Check the host side before dialling: a typo fails fast.
				if _, err := os.Lstat(src.path); err != nil {
					return fmt.Errorf("copying %s: %w", src.path, err)
				}
			}
			sc, err := dialVM(ctx, c, name, info)
			if err != nil {
				return err
			}
			defer sc.Close()
			var st archive.Stats
			where := ""
			if dst.vm != "" {
				st, err = a.cpToGuest(ctx, sc, src, dst.path)
				where = name + ":" + dst.path
			} else {
				st, err = a.cpFromGuest(ctx, sc, src.path, dst)
				where = dst.path
			}
			if err != nil {
				return err
			}
			if len(st.Skipped) > 0 {
				fmt.Fprintf(a.streams.Err, "banger: skipped %d entries that cannot be made there (sockets; devices without privileges): %s\n",
					len(st.Skipped), strings.Join(st.Skipped, ", "))
			}
			if a.streams.ErrIsTerminal && !dst.stream {
				fmt.Fprintf(a.streams.Err, "copied %d entries, %s, to %s\n", st.Entries, bytesStr(st.Bytes), where)
			}
			return nil
		},
	}
	return cmd
}

// cpToGuestScript decides where a copy lands in the guest, as docker cp
// does, says so on its first line of output ("." when SRC's own name
// stays, else the name to use), then unpacks the tar stream on stdin.
// $1 is DST, $2 what SRC is: "file", "dir" or "contents" (SRC/. or a tar
// stream, which needs an existing directory or makes one).
const cpToGuestScript = `set -eu
dst=$1 kind=$2
fail() { echo "$*" >&2; exit 3; }
if [ -d "$dst" ]; then
	dir=$dst name=.
elif [ -e "$dst" ] || [ -L "$dst" ]; then
	[ "$kind" = file ] || fail "$dst exists and is not a directory"
	dir=$(dirname -- "$dst") name=$(basename -- "$dst")
else
	case $dst in */) fail "$dst: no such directory";; esac
	parent=$(dirname -- "$dst")
	[ -d "$parent" ] || fail "$parent: no such directory"
	if [ "$kind" = contents ]; then
		mkdir -- "$dst"
		dir=$dst name=.
	else
		dir=$parent name=$(basename -- "$dst")
	fi
fi
echo "$name"
exec tar -x -p --no-same-owner -f - -C "$dir"
`

// cpFromGuestScript checks SRC ($1) and writes it as a tar stream, after
// a first line saying what it is ("dir" or "file"). $2 is "contents" for
// SRC/.
const cpFromGuestScript = `set -eu
src=$1
if ! [ -e "$src" ] && ! [ -L "$src" ]; then echo "$src: no such file or directory" >&2; exit 3; fi
if [ "$2" = contents ]; then
	[ -d "$src" ] || { echo "$src is not a directory" >&2; exit 3; }
	echo dir
	exec tar -c -f - -C "$src" .
fi
if [ -d "$src" ] && ! [ -L "$src" ]; then echo dir; else echo file; fi
cd -- "$(dirname -- "$src")"
exec tar -c -f - -- "$(basename -- "$src")"
`

// guestScript runs one of vm cp's scripts in the guest; a failure carries
// the guest's words, sanitized (workspace.RunScript).
func guestScript(ctx context.Context, sc *ssh.Client, script string, args []string, stdin io.Reader, stdout io.Writer) error {
	return workspace.RunScript(ctx, sshGuest{sc}, "banger-cp", script, args, stdin, stdout)
}

// cpToGuest packs src as the invoking user (or passes stdin's tar stream
// through) and unpacks it at dst in the guest.
func (a *app) cpToGuest(ctx context.Context, sc *ssh.Client, src cpEnd, dst string) (archive.Stats, error) {
	kind := "contents"
	if !src.stream && !contentsOnly(src.path) {
		fi, err := os.Lstat(src.path)
		if err != nil {
			return archive.Stats{}, fmt.Errorf("copying %s: %w", src.path, err)
		}
		kind = "file"
		if fi.IsDir() {
			kind = "dir"
		}
	}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := guestScript(ctx, sc, cpToGuestScript, []string{dst, kind}, inR, outW)
		outW.Close()
		inR.CloseWithError(errors.New("the guest stopped reading"))
		done <- err
	}()
	// The guest's first line says what name the copy takes.
	line, rerr := bufio.NewReader(outR).ReadString('\n')
	go func() { _, _ = io.Copy(io.Discard, outR) }()
	if rerr != nil {
		inW.Close()
		if err := <-done; err != nil {
			return archive.Stats{}, err
		}
		return archive.Stats{}, errors.New("the guest did not say where the copy goes")
	}
	top := strings.TrimSpace(line)
	if top == "." && kind != "contents" {
		top = filepath.Base(filepath.Clean(src.path))
	}
	w, finish := a.cpProgress(inW, "copying to the vm")
	var st archive.Stats
	var err error
	if src.stream {
		var n int64
		n, err = io.Copy(w, a.streams.In)
		st.Bytes = n
	} else {
		st, err = archive.Pack(ctx, w, strings.TrimSuffix(src.path, "/."), top)
	}
	finish()
	inW.CloseWithError(err)
	gerr := <-done
	if gerr != nil {
		return st, gerr
	}
	return st, err
}

// cpFromGuest has the guest pack src and unpacks it at dst on the host,
// confined to dst (or its parent, when the copy is to be named dst).
func (a *app) cpFromGuest(ctx context.Context, sc *ssh.Client, src string, dst cpEnd) (archive.Stats, error) {
	mode := "whole"
	if contentsOnly(src) {
		mode = "contents"
		if src != "." {
			src = strings.TrimSuffix(src, "/.")
		}
	}
	// A failed unpack ends the guest's side too, rather than leaving its
	// tar blocked on a stream nobody reads.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	outR, outW := io.Pipe()
	var gerr error // the guest side's, set before done closes
	done := make(chan struct{})
	go func() {
		defer close(done)
		gerr = guestScript(ctx, sc, cpFromGuestScript, []string{src, mode}, nil, outW)
		outW.CloseWithError(gerr)
	}()
	br := bufio.NewReader(outR)
	line, err := br.ReadString('\n')
	if err != nil {
		<-done
		if gerr != nil {
			return archive.Stats{}, gerr
		}
		return archive.Stats{}, fmt.Errorf("reading from the guest: %w", err)
	}
	isDir := strings.TrimSpace(line) == "dir"
	r, finish := a.cpProgressReader(br, "copying from the vm")
	defer finish()
	var st archive.Stats
	if dst.stream {
		st.Bytes, err = io.Copy(a.streams.Out, r)
	} else {
		st, err = unpackAt(ctx, r, dst.path, isDir, mode == "contents")
	}
	if err != nil {
		// The unpack's error says more than the cancelled session's.
		cancel()
		go func() { _, _ = io.Copy(io.Discard, outR) }()
		<-done
		return st, err
	}
	// tar pads its stream past the end-of-archive marker, where Unpack
	// stops reading.
	_, _ = io.Copy(io.Discard, br)
	<-done
	return st, gerr
}

// unpackAt applies docker cp's rules for a host DST.
func unpackAt(ctx context.Context, r io.Reader, dst string, isDir, contents bool) (archive.Stats, error) {
	fi, err := os.Stat(dst)
	switch {
	case err == nil && fi.IsDir():
		return archive.Unpack(ctx, r, dst, archive.Options{})
	case err == nil:
		if isDir {
			return archive.Stats{}, fmt.Errorf("copying a directory onto %s: it exists and is not a directory", dst)
		}
	case !errors.Is(err, os.ErrNotExist):
		return archive.Stats{}, fmt.Errorf("copying to %s: %w", dst, err)
	case strings.HasSuffix(dst, "/"):
		return archive.Stats{}, fmt.Errorf("copying to %s: no such directory", dst)
	}
	parent := filepath.Dir(filepath.Clean(dst))
	if pfi, err := os.Stat(parent); err != nil || !pfi.IsDir() {
		return archive.Stats{}, fmt.Errorf("copying to %s: %s is not a directory", dst, parent)
	}
	if contents {
		if err := os.Mkdir(dst, 0o755); err != nil {
			return archive.Stats{}, fmt.Errorf("copying to %s: %w", dst, err)
		}
		return archive.Unpack(ctx, r, dst, archive.Options{})
	}
	return archive.Unpack(ctx, r, parent, archive.Options{Rename: path.Base(filepath.ToSlash(filepath.Clean(dst)))})
}

// cpProgress counts bytes written through w on a terminal's progress
// line. finish clears it.
func (a *app) cpProgress(w io.Writer, what string) (io.Writer, func()) {
	bar := a.cpBar(what)
	if bar == nil {
		return w, func() {}
	}
	return io.MultiWriter(w, bar), func() { _ = bar.Finish() }
}

func (a *app) cpProgressReader(r io.Reader, what string) (io.Reader, func()) {
	bar := a.cpBar(what)
	if bar == nil {
		return r, func() {}
	}
	return io.TeeReader(r, bar), func() { _ = bar.Finish() }
}

func (a *app) cpBar(what string) *progressbar.ProgressBar { return a.byteBar(-1, what) }
