#!/usr/bin/env bash
# pg_regress suite: sql/*.sql against expected/*.out.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh
rm -f regression.diffs
if in_cluster -- make -s installcheck PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config; then
  exit 0
fi
[ -f regression.diffs ] && cat regression.diffs
exit 1
