#!/usr/bin/env bash
# pgTAP suite: every test/pgtap/*.sql through pg_prove, in its own database.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh
shopt -s nullglob
files=(test/pgtap/*.sql)
if [ ${#files[@]} -eq 0 ]; then
  echo "no pgTAP files"
  exit 1
fi
in_cluster -- bash -c 'createdb harbor_tap && pg_prove --failures -d harbor_tap "$@"' _ "${files[@]}"
