#!/usr/bin/env bash
# `sudo make demo`: run a stand-in agent in a clawguard sandbox on the built-in
# openclaw profile and show what the sandbox allows and refuses. Everything
# stays on this machine: the image is built locally and the sandbox has no
# route out.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CG="$ROOT/bin/clawguard"
SOCK=/run/containerd/containerd.sock
DEMO=${DEMO_DIR:-/tmp/clawguard-demo}
IMAGE=docker.io/clawguard/demo-agent:latest
NAME=openclaw

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# 1. containerd: use the running one, else start it (systemd if present).
if ! ctr -a "$SOCK" version >/dev/null 2>&1; then
	if [ -d /run/systemd/system ]; then
		say "starting containerd (systemctl)"
		systemctl start containerd
	else
		say "starting containerd (no systemd here; log in /var/log/clawguard-demo-containerd.log)"
		nohup containerd >/var/log/clawguard-demo-containerd.log 2>&1 &
	fi
	for _ in $(seq 100); do ctr -a "$SOCK" version >/dev/null 2>&1 && break; sleep 0.1; done
	ctr -a "$SOCK" version >/dev/null
fi

# A sandbox left by an interrupted demo is stopped first.
"$CG" stop --timeout 2s "$NAME" >/dev/null 2>&1 || true

# 2. The stand-in agent: busybox, the cgprobe helper and a script that tries
#    what a hijacked agent would.
say "building the demo agent image locally ($IMAGE)"
rm -rf "$DEMO"
mkdir -p "$DEMO"/{workspace,config,secrets}
cat >"$DEMO/agent.sh" <<'AGENT'
#!/bin/sh
say() { echo "[agent] $*"; }
# try WHAT CMD...: run CMD and report whether the sandbox allowed it.
try() { what=$1; shift; if out=$("$@" 2>&1); then say "$what: ALLOWED"; else say "$what: refused (${out##*: })"; fi; }
say "I am $(id)"
echo "notes from the agent" > /workspace/hello.txt && say "write /workspace/hello.txt: ok"
say "read /run/secrets/anthropic_api_key: $(wc -c < /run/secrets/anthropic_api_key) bytes (value not shown)"
try "overwrite /bin/sh" sh -c 'echo x > /bin/sh'
try "write /etc/passwd" sh -c 'echo x >> /etc/passwd'
cp /bin/busybox /tmp/bb
try "run a binary copied to /tmp" /tmp/bb true
try "connect to 198.51.100.1:80" nc -w 2 198.51.100.1 80
say "fork bomb: $(cgprobe forkbomb | tr -d '\n ')"
say "syscalls refused with EPERM (ptrace, mount, unshare, bpf, keyctl, io_uring, ...): $(cgprobe syscalls | grep -c '"EPERM"')"
say "idle now; clawguard stop sends SIGTERM"
trap 'say "SIGTERM received, exiting"; exit 0' TERM
while :; do sleep 1 & wait $!; done
AGENT
"$ROOT/bin/cgimage" -ref "$IMAGE" -o "$DEMO/image.tar" -probe "$ROOT/bin/cgprobe" \
	-file "usr/local/bin/demo-agent=$DEMO/agent.sh:755" -cmd /usr/local/bin/demo-agent
ctr -a "$SOCK" -n clawguard images import "$DEMO/image.tar" >/dev/null

# 3. A project folder the way a user keeps one: workspace owned by the agent's
#    user, read-only config, private secrets.
chown 1000:1000 "$DEMO/workspace"
chmod 700 "$DEMO/secrets"
printf 'sk-ant-demo-not-a-real-key' >"$DEMO/secrets/anthropic_api_key"
chmod 600 "$DEMO/secrets/anthropic_api_key"
echo '{}' >"$DEMO/config/openclaw.json"

say "clawguard run --image $IMAGE   (built-in openclaw profile, from $DEMO)"
cd "$DEMO"
"$CG" run --image "$IMAGE" >"$DEMO/run.log" 2>&1 &
RUN_PID=$!
trap 'kill -INT $RUN_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "running (pid" "$DEMO/run.log" && break; sleep 0.1; done
sleep 3 # let the agent go through its attempts
cat "$DEMO/run.log"

say "clawguard status"
"$CG" status

say "checks from outside"
echo "workspace on the host:   $(cat "$DEMO/workspace/hello.txt")"
echo "identity inside:         $("$CG" exec "$NAME" -- cgprobe identity | tr -d '\n ' )"
echo "limits inside:           $("$CG" exec "$NAME" -- cgprobe limits | tr -d '\n ')"

say "clawguard stop $NAME"
"$CG" stop "$NAME"
wait $RUN_PID || true
trap - EXIT
tail -2 "$DEMO/run.log"
say "demo done: the sandbox and everything it created are gone ($("$CG" status | head -1))"
