#!/usr/bin/env bash
# Isolation specs: specs/*.spec against expected/*.out, run by PGXS's
# pg_isolation_regress (make installcheck with only ISOLATION set) in a
# throwaway cluster with harbor_orm preloaded.  Prints
# output_iso/regression.diffs when a spec fails.
#
#   bash test/suites/isolation.sh                 every spec
#   bash test/suites/isolation.sh ddl_warm_cache  only the named specs
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh
rm -rf output_iso
args=()
[ $# -gt 0 ] && args=("ISOLATION=$*")
# A short deadlock_timeout, so that a deadlock between two steps is detected
# and shown at once rather than after the default second.
if in_cluster -o deadlock_timeout=100ms -- \
     make -s installcheck PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config REGRESS= TAP_TESTS= "${args[@]+"${args[@]}"}"; then
  exit 0
fi
[ -f output_iso/regression.diffs ] && cat output_iso/regression.diffs
exit 1
