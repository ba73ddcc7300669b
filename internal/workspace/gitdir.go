package workspace

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// gitFile is a file of the guest's git directory that the host writes.
type gitFile struct {
	name string
	data []byte
}

// guestGitDir writes what `git init`, `git config` and `git update-ref`
// would have made in the guest — HEAD, config and the refs — on the host,
// where git runs natively; the guest then runs no git at all to prepare.
// The config holds only what banger chose: the identity, the upstream's
// name and credential-free URL. Nothing of the host's config travels.
func guestGitDir(ctx context.Context, s *Snapshot) ([]gitFile, error) {
	tmp, err := os.MkdirTemp("", "banger-gitdir-")
	if err != nil {
		return nil, fmt.Errorf("writing the guest's git config: %w", err)
	}
	defer os.RemoveAll(tmp)
	cfg := filepath.Join(tmp, "config")
	name, email := s.UserName, s.UserEmail
	if name == "" {
		name = "banger"
	}
	if email == "" {
		email = "banger@localhost"
	}
	version := "0"
	if s.Repo.Format == "sha256" {
		version = "1"
	}
	sets := [][2]string{
		{"core.repositoryformatversion", version},
		{"core.filemode", "true"},
		{"core.bare", "false"},
		{"core.logallrefupdates", "true"},
	}
	if s.Repo.Format == "sha256" {
		sets = append(sets, [2]string{"extensions.objectformat", "sha256"})
	}
	sets = append(sets, [2]string{"user.name", name}, [2]string{"user.email", email})
	refs := map[string]string{"refs/banger/base": s.BaseCommit, "refs/banger/index": s.IndexCommit}
	if s.Branch != "" && s.Head != "" {
		refs["refs/heads/"+s.Branch] = s.Head
	}
	if u := s.Upstream; u.Remote != "" {
		if u.URL != "" {
			sets = append(sets, [2]string{"remote." + u.Remote + ".url", u.URL})
		}
		sets = append(sets, [2]string{"remote." + u.Remote + ".fetch", "+refs/heads/*:refs/remotes/" + u.Remote + "/*"})
		if s.Branch != "" {
			sets = append(sets, [2]string{"branch." + s.Branch + ".remote", u.Remote}, [2]string{"branch." + s.Branch + ".merge", u.Merge})
		}
		if u.Commit != "" {
			refs["refs/remotes/"+u.Remote+"/"+strings.TrimPrefix(u.Merge, "refs/heads/")] = u.Commit
		}
	}
	for _, kv := range sets {
		// -f: only this file; git quotes the values as its format needs.
		if _, err := s.Repo.git(ctx, []string{"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null"}, "config", "-f", cfg, kv[0], kv[1]); err != nil {
			return nil, fmt.Errorf("writing the guest's git config (%s): %w", kv[0], err)
		}
	}
	config, err := os.ReadFile(cfg)
	if err != nil {
		return nil, fmt.Errorf("writing the guest's git config: %w", err)
	}
	head := "ref: refs/heads/" + s.Branch + "\n"
	if s.Branch == "" {
		head = s.Head + "\n"
	}
	names := make([]string, 0, len(refs))
	for n := range refs {
		if _, err := s.Repo.git(ctx, nil, "check-ref-format", n); err != nil {
			return nil, fmt.Errorf("ref %q cannot travel: %w", n, err)
		}
		names = append(names, n)
	}
	sort.Strings(names)
	var packed strings.Builder
	packed.WriteString("# pack-refs with: peeled fully-peeled sorted \n")
	for _, n := range names {
		packed.WriteString(refs[n] + " " + n + "\n")
	}
	return []gitFile{
		{"HEAD", []byte(head)},
		{"config", config},
		{"packed-refs", []byte(packed.String())},
	}, nil
}
