#!/bin/sh
# Compatibility workload for the seccomp profiles: what an agent's shell
# does with coreutils. Works with busybox applets and with GNU coreutils.
# Prints one line per step and exits non-zero at the first failure.
set -eu
dir=$(mktemp -d "${TMPDIR:-/tmp}/compat-sh.XXXXXX")
trap 'rm -rf "$dir"' EXIT
step() { echo "ok $1"; }
cd "$dir"
printf 'one\ntwo\nthree\n' > a.txt && step write
cat a.txt | wc -l | grep -q 3 && step "cat|wc"
head -n 1 a.txt | grep -q one && tail -n 1 a.txt | grep -q three && step head/tail
sort -r a.txt | uniq | tr a-z A-Z > b.txt && grep -q TWO b.txt && step sort/uniq/tr
sed 's/two/2/' a.txt | awk '{n++} END {exit n != 3}' && step sed/awk
mkdir -p sub/deeper && cp a.txt sub/deeper/ && mv sub/deeper/a.txt sub/c.txt && ln -s c.txt sub/link && step mkdir/cp/mv/ln
find . -name '*.txt' | wc -l | grep -q 3 && ls -la sub >/dev/null && step find/ls
chmod 600 b.txt && stat b.txt >/dev/null 2>&1 || ls -l b.txt >/dev/null && step chmod/stat
tar -cf t.tar sub && gzip -9 t.tar && gunzip t.tar.gz && tar -tf t.tar | grep -q c.txt && step tar/gzip
echo "x=$(expr 2 + 3)" | grep -q x=5 && [ "$(date +%Y)" -ge 2024 ] && step expr/date
env | grep -q PATH && id -u >/dev/null && uname -a >/dev/null && step env/id/uname
sleep 0.1 & wait $! && (echo sub-shell) | grep -q sub && step jobs/subshell
echo hello | md5sum >/dev/null && echo hello | sha256sum >/dev/null && step checksums
kill -0 $$ && step kill
rm -rf sub b.txt t.tar && step rm
echo "compat.sh: all ok"
