#!/usr/bin/env bash
# Installs the database and proxy servers the cluster tests start for themselves, when missing: PostgreSQL's
# server binaries (Debian package `postgresql`), `redis-server` and `nginx`. Idempotent and quiet: it prints one
# line per package it installs and nothing when all are present. Runs as root, or through sudo otherwise.
set -euo pipefail

missing=()
if ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then missing+=(postgresql); fi
if ! command -v redis-server >/dev/null 2>&1; then missing+=(redis-server); fi
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then missing+=(nginx); fi
[ "${#missing[@]}" -eq 0 ] && exit 0

as_root=()
if [ "$(id -u)" != 0 ]; then as_root=(sudo); fi
echo "install-servers: installing ${missing[*]}"
log=$(mktemp)
# Output only when something fails (apt and debconf chatter otherwise).
run() { "$@" >"$log" 2>&1 || { cat "$log" >&2; echo "install-servers: failed: $*" >&2; exit 1; }; }
run "${as_root[@]}" apt-get update -qq
# policy-rc.d 101 keeps the packages' own services from starting: the tests start their own on free ports.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
  "${as_root[@]}" chmod +x "$policy"
  trap '"${as_root[@]}" rm -f "$policy" "$log"' EXIT
else
  trap 'rm -f "$log"' EXIT
fi
run "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
