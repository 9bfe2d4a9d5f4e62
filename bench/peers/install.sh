#!/usr/bin/env bash
# Installs the peer job systems of the side-by-side benchmark, pinned to exact versions,
# from the public registries, into bench/peers/.installed (git-ignored). Idempotent.
set -euo pipefail
cd "$(dirname "$0")"
DEST="$PWD/.installed"
mkdir -p "$DEST"

RIVER_VERSION=0.5.0          # crates.io riverqueue-cli: River's Rust client and its bench
GRAPHILE_VERSION=0.17.3      # npm graphile-worker (0.18 needs Node 22; this machine has 20)
BULLMQ_VERSION=6.7.0         # npm bullmq (Redis, and its PostgreSQL backend)
CELERY_VERSION=5.7.0         # PyPI celery[redis]

if [ ! -x "$DEST/bin/riverqueue" ]; then
  echo "peers: cargo install riverqueue-cli@$RIVER_VERSION"
  cargo install --locked --quiet riverqueue-cli --version "=$RIVER_VERSION" --root "$DEST"
fi

if [ ! -d "$DEST/node/node_modules/graphile-worker" ] || [ ! -d "$DEST/node/node_modules/bullmq" ]; then
  echo "peers: npm graphile-worker@$GRAPHILE_VERSION bullmq@$BULLMQ_VERSION"
  mkdir -p "$DEST/node"
  (cd "$DEST/node" && [ -f package.json ] || echo '{"private":true}' > "$DEST/node/package.json")
  (cd "$DEST/node" && npm install --silent --no-audit --no-fund --save-exact \
    "graphile-worker@$GRAPHILE_VERSION" "bullmq@$BULLMQ_VERSION" "ioredis@6.0.0" "pg@8.23.1")
fi

if [ ! -x "$DEST/venv/bin/celery" ]; then
  echo "peers: pip celery[redis]==$CELERY_VERSION"
  python3 -m venv "$DEST/venv"
  # requirements.lock pins celery and every dependency exactly (pip freeze of a first install).
  "$DEST/venv/bin/pip" install --quiet -r requirements.lock
fi

echo "peers: installed in $DEST"
"$DEST/bin/riverqueue" --help 2>/dev/null | head -n 1 || true
(cd "$DEST/node" && node -e 'for (const p of ["graphile-worker","bullmq"]) console.log(p, require(p + "/package.json").version)')
"$DEST/venv/bin/celery" --version
