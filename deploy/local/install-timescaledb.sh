#!/usr/bin/env bash
# Installs PostgreSQL 17 + TimescaleDB (Apache build) for the local stack.
#
# Debian 13 ships both packages; Debian 12 ships neither (and no PostgreSQL > 15),
# so there we unpack Debian 13's packages into a fixed tree with mmdebstrap and
# point their ELF interpreter and rpath at that tree: the binaries need glibc 2.38,
# the host has 2.36, and LD_LIBRARY_PATH alone cannot swap the dynamic loader.
# The patched tree embeds its own absolute path, so it must never be moved.
#
# Prints the PostgreSQL bin directory on its last line. Idempotent.
set -euo pipefail

TREE=${REJUVE_PG_TREE:-/opt/rejuve/pg17-trixie}
. /etc/os-release

log() { printf '[timescaledb] %s\n' "$*" >&2; }

if [ "${VERSION_CODENAME:-}" != "bookworm" ]; then
  # Debian 13 (trixie) and later: straight from apt, without the default cluster on 5432.
  if [ ! -x /usr/lib/postgresql/17/bin/postgres ] || [ ! -f /usr/lib/postgresql/17/lib/timescaledb.so ]; then
    mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/rejuve.conf
    log "installing postgresql-17 and postgresql-17-timescaledb from apt"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      postgresql-17 postgresql-17-timescaledb >&2
  fi
  echo /usr/lib/postgresql/17/bin
  exit 0
fi

BIN="$TREE/usr/lib/postgresql/17/bin"
if [ -f "$TREE/.rejuve-ready" ]; then
  echo "$BIN"
  exit 0
fi

for tool in mmdebstrap patchelf; do
  command -v "$tool" >/dev/null || {
    log "installing $tool"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mmdebstrap patchelf >&2
    break
  }
done

log "unpacking Debian 13 postgresql-17 + timescaledb into $TREE (about 30 s)"
rm -rf "$TREE.partial"
mkdir -p "$(dirname "$TREE")"
mmdebstrap --variant=minbase --quiet \
  --include=postgresql-17,postgresql-17-timescaledb \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --essential-hook='mkdir -p "$1/etc/postgresql-common/createcluster.d" && echo "create_main_cluster = false" > "$1/etc/postgresql-common/createcluster.d/rejuve.conf"' \
  trixie "$TREE.partial" >&2

# Patch in the final location: the paths written into the binaries must be the ones used at run time.
rm -rf "$TREE"
mv "$TREE.partial" "$TREE"
for f in "$BIN"/*; do
  if [ -f "$f" ] && head -c 4 "$f" | grep -q 'ELF'; then
    patchelf --set-interpreter "$TREE/usr/lib64/ld-linux-x86-64.so.2" \
      --force-rpath --set-rpath "$TREE/usr/lib/x86_64-linux-gnu" "$f"
  fi
done
"$BIN/postgres" --version >&2
touch "$TREE/.rejuve-ready"
echo "$BIN"
