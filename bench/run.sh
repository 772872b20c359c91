#!/usr/bin/env bash
# Every harbor_orm benchmark in one command, with a report and charts.
#
#   bash bench/run.sh            the full run (about 20-25 minutes on 2 cores)
#   bash bench/run.sh --quick    tiny data, short runs, one round (< 3 minutes)
#
# Installs what it needs (scripts/prepare.sh: build and install harbor_orm
# under the machine-wide lock; gnuplot-nox from Debian when missing), starts
# a throwaway cluster (pg_virtualenv -t, fsync=on, the settings below), builds
# the delaying proxy of bench/proxy/ and starts it on loopback (delay
# PROXY_DELAY_US each way, default 250 = 0.5 ms per round trip), then runs,
# each strategy against its baselines in the same run, interleaved:
#   proxy       the proxy itself: added latency at zero delay, ceilings
#   reserve     bench/lib/reserve.sh: 1 hot item and 10,000 items, 1/16/64
#               clients, flush on and off, direct and through the proxy
#   load        bench/lib/load.sh: 50/500/5,000 roots, 1 and 2 levels,
#               1 client (and 4 at 50 roots), direct and through the proxy
#   sweep       bench/sweep.sh: 100,000 expired holds, set-based SQL vs the
#               worker; reservation latency with and without a sweep
#   notify      bench/notify.sh: change notifications on the write path
# and writes bench/results/REPORT.md with PNG charts (bench/results/*.png);
# raw pgbench output stays in bench/results/raw/ (not committed).  --quick
# writes to bench/results/quick/ instead (not committed either).
# Each figure is the median of REPEATS rounds (3; --quick: 1) with the spread.
# ONLY="reserve load" runs a subset (the report covers what ran).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[ "${1:-}" = --quick ] || [ "${2:-}" = --quick ] && quick=1

if [ "${1:-}" != --inside ]; then
  if ! command -v gnuplot >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then echo "install gnuplot-nox first" >&2; exit 1; fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gnuplot-nox >/dev/null
  fi
  # A quick run writes apart, so it never overwrites the committed report.
  BENCH_OUT=$PWD/bench/results
  [ $quick = 1 ] && BENCH_OUT=$PWD/bench/results/quick
  export BENCH_OUT
  mkdir -p "$BENCH_OUT"
  rm -rf "$BENCH_OUT/raw" "$BENCH_OUT/REPORT.md" "$BENCH_OUT"/*.png
  mkdir -p "$BENCH_OUT/raw"
  . bench/lib/common.sh
  bench_cluster "$0" --inside $([ $quick = 1 ] && echo --quick) -- \
    -o max_connections=120 -o shared_buffers=256MB -o max_wal_size=4GB \
    -o harbor_orm.sweeper_databases=bench -o harbor_orm.sweep_interval=1h
fi

. bench/lib/common.sh
. bench/lib/reserve.sh
. bench/lib/load.sh
RESULTS=$BENCH_OUT
RAW=$RESULTS/raw
TSV=$RAW/results.tsv
export RAW
: >"$TSV"
started=$(date +%s)
only=${ONLY:-proxy reserve load sweep notify}
runs() { [[ " $only " == *" $1 "* ]]; }

if [ $quick = 1 ]; then
  export REPEATS=${REPEATS:-1} RES_SECONDS=${RES_SECONDS:-1} RES_CLIENTS=${RES_CLIENTS:-4} \
         LOAD_SECONDS=${LOAD_SECONDS:-1} LOAD_SIZES=${LOAD_SIZES:-50} LOAD_PRODUCTS=${LOAD_PRODUCTS:-1000} \
         SWEEP_HOLDS=${SWEEP_HOLDS:-10000} SWEEP_SECONDS=${SWEEP_SECONDS:-2} NOTIFY_SECONDS=${NOTIFY_SECONDS:-1} \
         PROXY_SECONDS=${PROXY_SECONDS:-1}
fi
export REPEATS=${REPEATS:-3} RES_SECONDS=${RES_SECONDS:-2} LOAD_SECONDS=${LOAD_SECONDS:-1}
SWEEP_HOLDS=${SWEEP_HOLDS:-100000}
SWEEP_SECONDS=${SWEEP_SECONDS:-3}
SWEEP_REPEATS=${SWEEP_REPEATS:-$REPEATS}
NOTIFY_SECONDS=${NOTIFY_SECONDS:-3}
PROXY_SECONDS=${PROXY_SECONDS:-2}
PROXY_DELAY_US=${PROXY_DELAY_US:-250}

export PGDATABASE=harbor_run
createdb harbor_run
W=$(mktemp -d)
trap 'proxy_stop_all; rm -rf "$W"' EXIT

proxy_build
PROXY0_PORT=$(( PGPORT + 1000 ))
PROXY_PORT=$(( PGPORT + 1001 ))
proxy_start "$PROXY0_PORT" 0
proxy_start "$PROXY_PORT" "$PROXY_DELAY_US"

# The machine and the settings that matter.
{
  echo "mode	$([ $quick = 1 ] && echo quick || echo full)"
  echo "date	$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "cpu	$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)"
  echo "cores	$(nproc)"
  echo "memory	$(free -g | awk '/^Mem:/ { print $2 " GiB" }')"
  echo "kernel	$(uname -r)"
  for s in server_version fsync synchronous_commit shared_buffers max_connections max_wal_size; do
    echo "$s	$(psql -X -At -c "SHOW $s")"
  done
  echo "harbor_orm	$(psql -X -At -c "SELECT default_version FROM pg_available_extensions WHERE name = 'harbor_orm'")"
  echo "commit	$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "proxy_delay_us	$PROXY_DELAY_US"
  echo "repeats	$REPEATS"
  echo "res_seconds	$RES_SECONDS"
  echo "load_seconds	$LOAD_SECONDS"
  echo "sweep_holds	$SWEEP_HOLDS"
  echo "sweep_seconds	$SWEEP_SECONDS"
  echo "sweep_repeats	$SWEEP_REPEATS"
  echo "notify_seconds	$NOTIFY_SECONDS"
} >"$RAW/machine.tsv"

if runs proxy; then
  echo "== the proxy itself" >&2
  echo 'SELECT 1;' >"$W/select1.sql"
  WARMUP=0 run_group proxy_select1 direct 1 "$PGPORT" "$PROXY_SECONDS" "select1=$W/select1.sql"
  WARMUP=0 run_group proxy_select1 proxy0 1 "$PROXY0_PORT" "$PROXY_SECONDS" "select1=$W/select1.sql"
  WARMUP=0 run_group proxy_select1 proxy 1 "$PROXY_PORT" "$PROXY_SECONDS" "select1=$W/select1.sql"
  WARMUP=0 run_group proxy_select1 direct 16 "$PGPORT" "$PROXY_SECONDS" "select1=$W/select1.sql"
  WARMUP=0 run_group proxy_select1 proxy0 16 "$PROXY0_PORT" "$PROXY_SECONDS" "select1=$W/select1.sql"
  # Bulk bytes: 100 MB of COPY output, direct and through the zero-delay proxy.
  for net in direct proxy0; do
    port=$PGPORT; [ $net = proxy0 ] && port=$PROXY0_PORT
    t0=$(date +%s.%N)
    psql -X -h 127.0.0.1 -p "$port" -c "COPY (SELECT repeat('x', 999) FROM generate_series(1, 100000)) TO STDOUT" >/dev/null
    t1=$(date +%s.%N)
    printf 'bulk_mb_s\t%s\t%s\n' "$net" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", 100 / (b - a) }')" >>"$RAW/proxy.tsv"
  done
fi

if runs reserve; then
  echo "== reservations" >&2
  reserve_setup
  reserve_scripts "$W"
  reserve_workloads "$W"
  if reserve_has_bucket_counters; then
    psql -X -A -F $'\t' -c "SELECT * FROM harbor.stock_bucket_counters()" >"$RAW/bucket_counters.tsv"
  fi
fi

if runs load; then
  echo "== loading" >&2
  load_setup
  load_workloads "$W"
fi

proxy_stop_all

if runs sweep; then
  echo "== sweeps" >&2
  for r in $(seq 1 "$SWEEP_REPEATS"); do
    BENCH_SECONDS=$SWEEP_SECONDS bash bench/sweep.sh --inside "$SWEEP_HOLDS" >"$RAW/sweep-$r.txt" 2>&1 ||
      { echo "bench/sweep.sh failed:" >&2; tail -20 "$RAW/sweep-$r.txt" >&2; }
  done
fi

if runs notify; then
  echo "== change notifications" >&2
  BENCH_SECONDS=$NOTIFY_SECONDS bash bench/notify.sh --inside >"$RAW/notify.txt" 2>&1 ||
    { echo "bench/notify.sh failed:" >&2; tail -20 "$RAW/notify.txt" >&2; }
fi

echo "elapsed	$(( $(date +%s) - started ))" >>"$RAW/machine.tsv"
python3 bench/lib/report.py "$RESULTS"
echo "report: $RESULTS/REPORT.md ($(( $(date +%s) - started )) s)"
