#!/usr/bin/env bash
# pg_regress suite: sql/*.sql against expected/*.out (the isolation specs and
# the TAP tests are suites of their own: test/suites/isolation.sh, tap.sh).
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh
rm -f regression.diffs
if in_cluster -- make -s installcheck PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config ISOLATION= TAP_TESTS=; then
  exit 0
fi
[ -f regression.diffs ] && cat regression.diffs
exit 1
