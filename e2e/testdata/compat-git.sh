#!/bin/sh
# Compatibility workload for the seccomp profiles: the git an agent uses on
# its workspace. Exits non-zero at the first failure.
set -eu
dir=$(mktemp -d "${TMPDIR:-/tmp}/compat-git.XXXXXX")
trap 'rm -rf "$dir"' EXIT
export HOME="$dir" GIT_CONFIG_NOSYSTEM=1
git config --global user.name agent
git config --global user.email agent@example.invalid
git config --global init.defaultBranch main
cd "$dir" && git init -q repo && cd repo
echo one > a.txt && git add a.txt && git commit -qm first
echo two >> a.txt && git diff --stat | grep -q a.txt
git commit -qam second && git log --oneline | grep -q second
git checkout -qb topic && echo three > b.txt && git add b.txt && git commit -qm third
git checkout -q main && git merge -q --no-edit topic && git status --short
git tag v1 && git show --stat v1 >/dev/null && git blame a.txt >/dev/null
git clone -q "$dir/repo" "$dir/clone" && git -C "$dir/clone" log --oneline | grep -q third
git gc -q && git fsck --no-progress >/dev/null
echo "compat-git.sh: all ok"
