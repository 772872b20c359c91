#!/usr/bin/env bash
# Benchmark: harbor.reserve_stock against the seed's client-side pattern
# (SELECT ... FOR UPDATE, UPDATE, INSERT, COMMIT as separate statements),
# the same logic as a PL/pgSQL function and a single-statement CTE, plus
# harbor.reserve_many with 3 lines and, when harbor.split_stock exists, the
# hot item split over max(16, clients) buckets.  One hot item and 10,000 items;
# synchronous_commit on and off; 16 and 64 clients; a cluster with fsync=on.
# All strategies of one row run in the same run, interleaved, on the same
# data (bench/lib/reserve.sh, shared with bench/run.sh), so the ratios hold
# even on a noisy machine.
#
#   bash bench/reserve.sh                 build, install, run, print the table
#   DURATION=10 CLIENTS="16 64" REPEATS=3 bash bench/reserve.sh
#   SCOPES=hot SYNCS=off VARIANTS="cte harbor" bash bench/reserve.sh   a subset
#   NETS="direct proxy" bash bench/reserve.sh   also through the 0.5 ms proxy
#
# DURATION: seconds per run (5); REPEATS: rounds, each figure their median (1).
# Raw pgbench output goes to bench/results/reserve-<timestamp>/.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib/common.sh

if [ "${1:-}" != inside ]; then
  RAW="$PWD/bench/results/reserve-$(date -u +%Y%m%dT%H%M%SZ)"
  export RAW
  mkdir -p "$RAW"
  bench_cluster "$0" inside -- -o max_connections=100 -o shared_buffers=256MB -o max_wal_size=4GB
fi

. bench/lib/reserve.sh
export PGDATABASE=bench
export REPEATS=${REPEATS:-1} RES_SECONDS=${DURATION:-5} RES_CLIENTS=${CLIENTS:-16 64}
export RES_SCOPES=${SCOPES:-hot spread} RES_SYNCS=${SYNCS:-off on} RES_NETS=${NETS:-direct}
[ -n "${VARIANTS:-}" ] && export RES_VARIANTS=$VARIANTS
TSV=$RAW/results.tsv
: >"$TSV"
createdb bench
reserve_setup
w=$(mktemp -d)
trap 'proxy_stop_all; rm -rf "$w"' EXIT
reserve_scripts "$w"
if [[ " $RES_NETS " == *" proxy "* ]]; then
  proxy_build
  PROXY_PORT=$(( PGPORT + 1001 ))
  proxy_start "$PROXY_PORT" "${PROXY_DELAY_US:-250}"
fi
reserve_workloads "$w" 2>&1 | sed 's/^/ /'

{
  echo
  echo "reserve 1 unit: ${RES_SECONDS}s per run, $REPEATS round(s) (median), fsync=on, pgbench -M prepared, TPS"
  echo "(many3 = reserve_many with 3 lines; split = reserve_stock on the hot item split over max(16, clients) buckets)"
  printf '%-7s %-6s %-4s %3s %8s %8s %8s %8s %8s %8s %9s %9s %9s %9s\n' items net sync cl \
    client plpgsql cte harbor many3 split "h/client" "h/plpgsql" "h/cte" "split/cl"
  awk -F'\t' '{ split($1, a, "_"); sub("flush-", "", a[3]); k = a[2] "|" $2 "|" a[3] "|" $3
                if (!(k in seen)) { seen[k] = 1; order[++n] = k }
                t[k "|" $4] = $5 }
    function v(k, s) { return (k "|" s) in t ? t[k "|" s] : 0 }
    function r(a, b) { return b > 0 && a > 0 ? sprintf("%8.2fx", a / b) : "      n/a" }
    END { for (i = 1; i <= n; i++) { k = order[i]; split(k, f, "|")
      printf "%-7s %-6s %-4s %3s %8.0f %8.0f %8.0f %8.0f %8.0f %8.0f %9s %9s %9s %9s\n",
        (f[1] == "hot" ? "1 hot" : "10,000"), f[2], f[3], f[4],
        v(k, "client"), v(k, "plpgsql"), v(k, "cte"), v(k, "harbor"), v(k, "many3"), v(k, "split"),
        r(v(k, "harbor"), v(k, "client")), r(v(k, "harbor"), v(k, "plpgsql")), r(v(k, "harbor"), v(k, "cte")),
        r(v(k, "split"), v(k, "client")) } }' "$TSV"
  reserve_has_split || echo "(harbor.split_stock is not installed: split not measured)"
  if reserve_has_bucket_counters; then
    echo "bucket paths (harbor.stock_bucket_counters()):"
    psql -X -At -F ' ' -c "SELECT * FROM harbor.stock_bucket_counters()" | sed 's/^/  /'
  fi
} | tee "$RAW/summary.txt"
