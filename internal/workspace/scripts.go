package workspace

import (
	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/wsstream"
)

// The guest side is plain sh and git, run over the VM's pinned SSH
// connection. Every value reaches a script as a positional argument, never
// spliced into its text. Scripts exit with the codes below for the failures
// the host explains itself; the host never shows what a guest printed
// without stripping control characters from it.

// Guest exit codes.
const (
	exitNoGit       = 10 // git or flock missing in the guest
	exitNotOurs     = 11 // the directory exists and is not a banger workspace
	exitChanged     = 12 // the guest changed the workspace since prepare
	exitNoWorkspace = 13 // nothing prepared at that path
	exitOldAgent    = 14 // the guest's agent cannot unpack a workspace stream (an old agent's usage exit 2)
)

// stageDir is where a prepare stages the new workspace next to the old one
// (same filesystem, so the swap is two renames).
const stageDir = model.WorkspaceStageDir

// lockWrap runs a script under the guest's workspace lock: it is held
// while that one script runs, and released however the session ends.
//
//	$1 lock file, $2 script, $3 $0 of the script, then its arguments
const lockWrap = `command -v flock >/dev/null 2>&1 || exit 10
[ -d "${1%/*}" ] || mkdir -p "${1%/*}"
l=$1
shift
exec flock -w 600 "$l" sh -c "$@"`

// stateFunc prints "HEAD INDEX-TREE WORKTREE-TREE" of the repository in
// the current directory without writing to it (a temporary index and
// object directory).
const stateFunc = `state() {
  t=$(mktemp -d /tmp/banger-ws.XXXXXX)
  mkdir "$t/objects"
  [ -f .git/index ] && cp .git/index "$t/index"
  h=$(git rev-parse -q --verify 'HEAD^{commit}' || echo none)
  i=$(GIT_INDEX_FILE="$t/index" GIT_OBJECT_DIRECTORY="$t/objects" GIT_ALTERNATE_OBJECT_DIRECTORIES="$PWD/.git/objects" git write-tree)
  GIT_INDEX_FILE="$t/index" GIT_OBJECT_DIRECTORY="$t/objects" GIT_ALTERNATE_OBJECT_DIRECTORIES="$PWD/.git/objects" git add -A
  w=$(GIT_INDEX_FILE="$t/index" GIT_OBJECT_DIRECTORY="$t/objects" GIT_ALTERNATE_OBJECT_DIRECTORIES="$PWD/.git/objects" git write-tree)
  rm -rf "$t"
  echo "$h $i $w"
}
`

// prepareScript runs under the workspace lock (lockWrap), in one session:
// it recovers a swap that a stopped VM interrupted, refuses to replace what
// it must not, answers "ready FREE-KiB" (the space left where the
// workspace goes), and waits for the host's "go". Then it builds the new
// workspace from the stream that follows in a staging directory and swaps
// it in (the guest holds the old workspace or the new one, never half of
// one), answers "done", and keeps the lock until the host closes its
// stdin, which it does once it has recorded the workspace. The agent writes
// the files, the git directory and the index (see internal/wsstream); no
// git runs but the state check of a workspace being replaced.
//
//	$1 dir  $2 expected "HEAD INDEX-TREE WORKTREE-TREE" ("" without a record)
//	$3 force (0|1)  $4 the agent  $5 object format  $6 readonly (0|1)
const prepareScript = `set -eu
command -v git >/dev/null 2>&1 || exit 10
` + stateFunc + `dir=$1 want=$2 force=$3 agent=$4 fmt=$5 ro=$6
parent=$(dirname "$dir"); leaf=$(basename "$dir"); st="$parent/` + stageDir + `"
new="$st/$leaf.new"; old="$st/$leaf.old"
mkdir -p "$parent"
if [ ! -e "$dir" ] && [ -d "$old" ]; then mv "$old" "$dir"; fi
if [ -e "$dir" ] && [ "$force" != 1 ]; then
  if [ -z "$want" ]; then
    [ -z "$(ls -A "$dir" 2>/dev/null)" ] || exit 11
  elif [ ! -d "$dir/.git" ]; then
    exit 12
  else
    got=$(cd "$dir" && state) || exit 12
    [ "$got" = "$want" ] || exit 12
  fi
fi
echo "ready $(df -Pk "$parent" | awk 'NR==2 {print $4}')"
IFS= read -r go || exit 0
[ "$go" = go ] || exit 0
rm -rf "$new" "$old"
mkdir -p "$new"
rflag=
[ "$ro" != 1 ] || rflag=--readonly
c=0
"$agent" ` + wsstream.Command + ` --format "$fmt" $rflag "$new" || c=$?
if [ $c != 0 ]; then
  rm -rf "$new"; rmdir "$st" 2>/dev/null || true
  [ $c != 2 ] || exit 14
  exit $c
fi
cd /
if mountpoint -q "$dir" 2>/dev/null; then umount "$dir"; fi
if [ -e "$dir" ]; then chmod u+w "$dir" 2>/dev/null || true; mv "$dir" "$old"; fi
mv "$new" "$dir"
chmod -R u+w "$old" 2>/dev/null || true
rm -rf "$old"
rmdir "$st" 2>/dev/null || true
if [ "$ro" = 1 ]; then
  # The agent wrote the tree read-only; changing a tracked file's mode
  # here would change its ctime and make git re-read every file.
  chmod -R a-w "$dir/.git"
  chmod a-w "$dir"
  mount --bind "$dir" "$dir"
  mount -o remount,bind,ro "$dir"
fi
echo done
exec cat >/dev/null
`

// exportScript snapshots the guest's working state as one more commit on
// its HEAD (in a temporary object directory: the workspace may be
// read-only), prints "banger-export HEAD WIP", and then streams a pack of
// every object the host lacks: the guest's commits, the work-in-progress
// commit, and prepare's base commits.
//
//	$1 dir $2 message $3 host-head ("" for none) $4 base-commit $5 index-commit
//	$6 send the base commits too (0|1)
const exportScript = `set -eu
command -v git >/dev/null 2>&1 || exit 10
dir=$1 msg=$2 hosthead=$3 base=$4 index=$5 sendbase=$6
[ -d "$dir/.git" ] || exit 13
cd "$dir"
# The temporary index starts as a hard link to the real one where the
# workspace is writable (git replaces it by rename, never in place), a
# copy where it is read-only.
t=$PWD/.git/banger-export.$$
trap 'rm -rf "$t"' EXIT
if mkdir "$t" 2>/dev/null; then
  [ ! -f .git/index ] || ln .git/index "$t/index" 2>/dev/null || cp .git/index "$t/index"
else
  t=$(mktemp -d /tmp/banger-export.XXXXXX)
  [ ! -f .git/index ] || cp .git/index "$t/index"
fi
mkdir "$t/objects"
export GIT_INDEX_FILE="$t/index" GIT_OBJECT_DIRECTORY="$t/objects" GIT_ALTERNATE_OBJECT_DIRECTORIES="$PWD/.git/objects"
git add -A
tree=$(git write-tree)
head= htree=
if ht=$(git rev-parse 'HEAD^{commit}' 'HEAD^{tree}' 2>/dev/null); then
  set -- $ht
  head=$1 htree=$2
fi
if [ -n "$head" ] && [ "$htree" = "$tree" ]; then
  wip=$head
elif [ -n "$head" ]; then
  wip=$(git commit-tree "$tree" -p "$head" -m "$msg")
else
  wip=$(git commit-tree "$tree" -m "$msg")
fi
printf 'banger-export %s %s\n' "${head:-none}" "$wip"
# prepare's commits go back only when the host lacks them.
{ echo "$wip"; [ "$sendbase" != 1 ] || { echo "$base"; echo "$index"; }; [ -z "$hosthead" ] || echo "^$hosthead"; } | git pack-objects --revs --stdout -q
`
