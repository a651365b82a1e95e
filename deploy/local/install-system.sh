#!/usr/bin/env bash
# System packages and tools for the local stack on Debian 12 or 13 (root, no Docker).
# Idempotent and quick when everything is there: apt runs only for what is missing.
#
# With REJUVE_DATABASE_URL set, no local TimescaleDB is installed;
# with REJUVE_REDIS_URL set, no local Redis.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. /etc/os-release

log() { printf '[setup] %s\n' "$*" >&2; }

if [ "$(id -u)" != 0 ]; then
  echo "[setup] error: the local stack is installed as root (apt, a service user); run as root" >&2
  echo "[setup] or point REJUVE_DATABASE_URL / REJUVE_REDIS_URL at servers you already run" >&2
  exit 1
fi

# chromium: browser tests (Playwright drives Debian's build); the proxy: JupyterHub's.
want=(ca-certificates python3 python3-venv chromium node-configurable-http-proxy)
[ -z "${REJUVE_REDIS_URL:-}" ] && want+=(redis-server)
if [ -z "${REJUVE_DATABASE_URL:-}" ] && [ "${VERSION_CODENAME:-}" = "bookworm" ]; then
  want+=(mmdebstrap patchelf)
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt: installing ${missing[*]}"
  # Debian's redis-server package would start a system Redis on 6379; we run our own.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

if [ -z "${REJUVE_DATABASE_URL:-}" ]; then
  bash "$here/install-timescaledb.sh" >/dev/null
fi

# uv installs the locked Python set in seconds; it lives in its own small venv.
if ! command -v uv >/dev/null && [ ! -x /opt/rejuve/tools/bin/uv ]; then
  log "installing uv"
  python3 -m venv /opt/rejuve/tools
  /opt/rejuve/tools/bin/pip install -q "uv==0.13.9"
fi
