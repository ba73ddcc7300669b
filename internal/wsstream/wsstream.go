// Package wsstream is the stream a workspace prepare sends into a guest,
// and the guest agent's side of it. The host writes the repository's git
// files and every file of the working tree, with each file's object ID, in
// one zstd-compressed tar; the agent writes them with several workers and
// few system calls (file creation, not transfer, is what costs in an
// emulated guest) and then writes git's index itself from the staged tree
// and the stat data of the files it just made. So the guest neither
// inflates a blob nor hashes a file, and a `git status` right after finds
// everything clean.
//
// The stream is trusted (the host made it), but every name is still
// checked: nothing is written outside the target directory, and no
// working-tree name may reach into .git.
package wsstream

import (
	"errors"
	"fmt"
	"strings"
)

// Names in the tar. The working tree travels as a list and one entry of
// all contents back to back, in the list's order: no tar header per file,
// which the guest would have to parse under emulation.
const (
	indexName = ".banger-index" // the staged entries (see IndexEntry)
	gitPrefix = ".git/"         // files of the git directory, at their own names
	treeName  = ".banger-tree"  // the working tree's entries (see TreeEntry)
	dataName  = ".banger-data"  // their contents, concatenated
)

// Git's file modes as trees and the index hold them.
const (
	ModeFile    = 0o100644
	ModeExec    = 0o100755
	ModeSymlink = 0o120000
	ModeGitlink = 0o160000
)

// IndexEntry is one staged entry (stage 0) of the index the guest gets.
type IndexEntry struct {
	Mode uint32
	OID  string
	Path string
}

// TreeEntry is one working-tree entry: a file (Size bytes of content), a
// symlink (its target is the content) or a gitlink (an empty directory,
// no content).
type TreeEntry struct {
	Mode uint32
	OID  string
	Size int64
	Path string
}

// checkPath refuses names that are not a plain relative path below the
// top, and any that reach into a .git directory.
func checkPath(p string, work bool) error {
	if p == "" || strings.HasPrefix(p, "/") || strings.ContainsRune(p, 0) {
		return fmt.Errorf("bad name %q in the workspace stream", p)
	}
	for _, c := range strings.Split(p, "/") {
		if c == "" || c == "." || c == ".." || (work && strings.EqualFold(c, ".git")) {
			return fmt.Errorf("bad name %q in the workspace stream", p)
		}
	}
	return nil
}

// ErrNoIndex means the stream ended without its index entries.
var ErrNoIndex = errors.New("the workspace stream has no index entries")

func oidLen(format string) (int, error) {
	switch format {
	case "sha1", "":
		return 20, nil
	case "sha256":
		return 32, nil
	}
	return 0, fmt.Errorf("unknown object format %q", format)
}
