package workspace

import "github.com/banger-dev/banger/internal/model"

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
)

// stageDir is where a prepare stages the new workspace next to the old one
// (same filesystem, so the swap is two renames).
const stageDir = model.WorkspaceStageDir

// lockScript holds the guest's workspace lock until its stdin closes,
// which happens when the host is done or its connection drops.
const lockScript = `command -v flock >/dev/null 2>&1 || exit 10
mkdir -p "$(dirname "$1")"
exec flock -w 600 "$1" sh -c 'echo locked; exec cat >/dev/null'`

// lockWrap runs a script under the guest's workspace lock, for commands
// that need it only while that one script runs (export, status).
//
//	$1 lock file, $2 script, $3 $0 of the script, then its arguments
const lockWrap = `command -v flock >/dev/null 2>&1 || exit 10
mkdir -p "$(dirname "$1")"
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

// checkScript runs before anything is sent: it recovers a swap that a
// stopped VM interrupted, refuses to replace what it must not, and prints
// the free space (KiB) of the filesystem the workspace goes to.
//
//	$1 dir  $2 expected "HEAD INDEX-TREE WORKTREE-TREE" ("" without a record)  $3 force (0|1)
const checkScript = `set -eu
command -v git >/dev/null 2>&1 || exit 10
` + stateFunc + `dir=$1 want=$2 force=$3
parent=$(dirname "$dir"); leaf=$(basename "$dir"); st="$parent/` + stageDir + `"
mkdir -p "$parent"
if [ ! -e "$dir" ] && [ -d "$st/$leaf.old" ]; then mv "$st/$leaf.old" "$dir"; fi
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
df -Pk "$parent" | awk 'NR==2 {print $4}'
`

// receiveScript builds the new workspace from the stream on stdin in a
// staging directory, then swaps it in: the guest holds the old workspace or
// the new one, never half of one.
//
//	$1 dir $2 object-format $3 head $4 branch $5 index-commit $6 base-commit
//	$7 remote $8 remote-url $9 merge-ref $10 upstream-commit $11 user.name
//	$12 user.email $13 readonly (0|1)
const receiveScript = `set -eu
dir=$1 fmt=$2 head=$3 branch=$4 index=$5 base=$6 remote=$7 url=$8 merge=$9
shift 9
upc=$1 name=$2 email=$3 ro=$4
parent=$(dirname "$dir"); leaf=$(basename "$dir"); st="$parent/` + stageDir + `"
new="$st/$leaf.new"; old="$st/$leaf.old"
rm -rf "$new" "$old"
mkdir -p "$new"
cd "$new"
git init -q --object-format="$fmt" .
tar -x --no-same-owner -C .git -f -
git config user.name "${name:-banger}"
git config user.email "${email:-banger@localhost}"
if [ -n "$branch" ]; then
  git symbolic-ref HEAD "refs/heads/$branch"
  [ -z "$head" ] || git update-ref "refs/heads/$branch" "$head"
elif [ -n "$head" ]; then
  git update-ref --no-deref HEAD "$head"
fi
if [ -n "$remote" ]; then
  [ -z "$url" ] || git config "remote.$remote.url" "$url"
  git config "remote.$remote.fetch" "+refs/heads/*:refs/remotes/$remote/*"
  if [ -n "$branch" ]; then
    git config "branch.$branch.remote" "$remote"
    git config "branch.$branch.merge" "$merge"
  fi
  [ -z "$upc" ] || git update-ref "refs/remotes/$remote/${merge#refs/heads/}" "$upc"
fi
git update-ref refs/banger/base "$base"
git update-ref refs/banger/index "$index"
# The worktree from the base tree, recording each file's stat data as it
# is written (-u), then the staged tree as the index: read-tree -m keeps
# the stat data of every entry that matches, so nothing is hashed again.
git read-tree "$base"
git checkout-index -a -f -u
git read-tree -m "$index"
git update-index -q --refresh >/dev/null 2>&1 || true
cd /
if mountpoint -q "$dir" 2>/dev/null; then umount "$dir"; fi
if [ -e "$dir" ]; then mv "$dir" "$old"; fi
mv "$new" "$dir"
rm -rf "$old"
rmdir "$st" 2>/dev/null || true
if [ "$ro" = 1 ]; then
  chmod -R a-w "$dir"
  mount --bind "$dir" "$dir"
  mount -o remount,bind,ro "$dir"
fi
`

// exportScript snapshots the guest's working state as one more commit on
// its HEAD (in a temporary object directory: the workspace may be
// read-only), prints "banger-export HEAD WIP", and then streams a pack of
// every object the host lacks: the guest's commits, the work-in-progress
// commit, and prepare's base commits.
//
//	$1 dir $2 message $3 host-head ("" for none) $4 base-commit $5 index-commit
const exportScript = `set -eu
command -v git >/dev/null 2>&1 || exit 10
dir=$1 msg=$2 hosthead=$3 base=$4 index=$5
[ -d "$dir/.git" ] || exit 13
cd "$dir"
t=$(mktemp -d /tmp/banger-export.XXXXXX)
trap 'rm -rf "$t"' EXIT
mkdir "$t/objects"
[ -f .git/index ] && cp .git/index "$t/index"
export GIT_INDEX_FILE="$t/index" GIT_OBJECT_DIRECTORY="$t/objects" GIT_ALTERNATE_OBJECT_DIRECTORIES="$PWD/.git/objects"
git add -A
tree=$(git write-tree)
head=$(git rev-parse -q --verify 'HEAD^{commit}' || true)
if [ -n "$head" ] && [ "$(git rev-parse "$head^{tree}")" = "$tree" ]; then
  wip=$head
elif [ -n "$head" ]; then
  wip=$(git commit-tree "$tree" -p "$head" -m "$msg")
else
  wip=$(git commit-tree "$tree" -m "$msg")
fi
printf 'banger-export %s %s\n' "${head:-none}" "$wip"
{ echo "$wip"; echo "$base"; echo "$index"; [ -z "$hosthead" ] || echo "^$hosthead"; } | git pack-objects --revs --stdout -q
`
