#!/usr/bin/env bash
# Builds and installs harbor_orm (extension and client) into the system
# PostgreSQL 15.  Quiet unless something fails.
set -euo pipefail
cd "$(dirname "$0")/.."
export PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
jobs=$(nproc 2>/dev/null || echo 2)
make -s -j"$jobs" PG_CONFIG="$PG_CONFIG" >/dev/null
make -s install PG_CONFIG="$PG_CONFIG" >/dev/null
