#!/usr/bin/env bash
# Runs inside the demo cluster (PG* variables point at it).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PGDATABASE=harbor_demo
createdb harbor_demo
for step in demo/steps/*; do
  echo
  case "$step" in
    *.sql) psql -X -q -v ON_ERROR_STOP=1 -f "$step" ;;
    *.sh)  bash "$step" ;;
  esac
done
