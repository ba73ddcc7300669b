package model

import (
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"
)

// Workspace is the record of a repository prepared into a VM: what was
// sent (as git object IDs) and what the last export left where. The
// daemon keeps it; it never reads the repository itself.
type Workspace struct {
	VMID string
	// Path is the workspace's directory in the guest, under WorkspaceRoot.
	Path string
	// Repo is the host repository's top directory (informational).
	Repo string
	// Head and Branch are the host's HEAD and branch at prepare.
	Head, Branch string
	// IndexCommit/IndexTree hold the staged state, BaseCommit/BaseTree
	// the working tree, as prepare sent them.
	IndexCommit, IndexTree, BaseCommit, BaseTree string
	ReadOnly                                     bool
	// ExportBranch and ExportCommit are where the last export to a branch
	// left it; a later export moves it only from there.
	ExportBranch, ExportCommit string
	PreparedAt                 time.Time
	ExportedAt                 time.Time
}

// WorkspaceRoot is where workspaces live in a guest: the persistent work disk.
const WorkspaceRoot = "/work"

// WorkspaceStageDir is the directory, beside a workspace, in which a
// prepare stages the new one before swapping it in.
const WorkspaceStageDir = ".banger-workspace"

// ValidateWorkspacePath checks a guest workspace path: absolute, clean,
// under /work, and not inside banger's staging directory.
func ValidateWorkspacePath(p string) error {
	if !path.IsAbs(p) || path.Clean(p) != p {
		return invalid("path", fmt.Sprintf("%q must be an absolute, clean path under %s", p, WorkspaceRoot))
	}
	rel, ok := strings.CutPrefix(p, WorkspaceRoot+"/")
	if !ok || rel == "" {
		return invalid("path", fmt.Sprintf("%q is outside %s; workspaces live on the VM's persistent work disk, e.g. %s/app", p, WorkspaceRoot, WorkspaceRoot))
	}
	for _, part := range strings.Split(rel, "/") {
		if part == WorkspaceStageDir {
			return invalid("path", fmt.Sprintf("%q is inside banger's staging directory", p))
		}
	}
	return nil
}

var oidRE = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)

// IsObjectID reports whether s is a full git object ID (SHA-1 or SHA-256).
func IsObjectID(s string) bool { return oidRE.MatchString(s) }

// ValidateWorkspace checks a record before it is stored.
func ValidateWorkspace(w Workspace) error {
	if err := ValidateWorkspacePath(w.Path); err != nil {
		return err
	}
	for name, v := range map[string]string{"index_commit": w.IndexCommit, "index_tree": w.IndexTree, "base_commit": w.BaseCommit, "base_tree": w.BaseTree} {
		if !IsObjectID(v) {
			return invalid(name, fmt.Sprintf("%q is not a git object ID", v))
		}
	}
	for name, v := range map[string]string{"head": w.Head, "export_commit": w.ExportCommit} {
		if v != "" && !IsObjectID(v) {
			return invalid(name, fmt.Sprintf("%q is not a git object ID", v))
		}
	}
	if len(w.Repo) > 4096 || len(w.Branch) > 255 || len(w.ExportBranch) > 255 {
		return invalid("workspace", "a field is too long")
	}
	return nil
}
