# Shared by the bench/ commands (sourced, not run).
#
# bench_cluster SCRIPT ARGS... -- [-o name=value ...]
#     builds and installs harbor_orm (scripts/prepare.sh, which takes the
#     machine-wide install lock for the caller's lifetime) and re-executes
#     SCRIPT with ARGS (in a child; the caller exits with its status)
#     inside a throwaway cluster: pg_virtualenv -t, harbor_orm
#     preloaded, fsync=on, plus the given settings.  The cluster is dropped
#     when SCRIPT ends.
# pgb_run NAME SCRIPT CLIENTS SECONDS [PORT]
#     one pgbench -M prepared run over TCP on 127.0.0.1 (the server's port,
#     or PORT, e.g. the delaying proxy's); raw output and per-transaction
#     logs go to $RAW/NAME.*; prints "tps p50 p95 p99 failed" (latencies in
#     ms, from the per-transaction log).
# latency_stats FROM TO FILES...
#     "avg p50 p95 p99 count" (ms) of the pgbench log lines of transactions
#     that ended between FROM and TO (epoch seconds; 0 9999999999: all).
# proxy_build / proxy_start PORT DELAY_US / proxy_stop_all
#     the delaying proxy of bench/proxy/.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGBENCH=/usr/lib/postgresql/15/bin/pgbench

bench_cluster() {
  local script=$1; shift
  local args=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do args+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  # BENCH_PREPARED=1: the caller (test/run_all.sh) has built and installed
  # harbor_orm and holds the lock already.
  if [ "${BENCH_PREPARED:-0}" != 1 ]; then
    . "$BENCH_DIR/../scripts/prepare.sh"
    harbor_prepare
  fi
  # This shell keeps the install lock (fd 9) until the run ends, so the
  # installed library stays put; the server must not inherit it.
  local rc=0
  pg_virtualenv -t -v 15 -o shared_preload_libraries=harbor_orm -o fsync=on "$@" \
    bash "$script" "${args[@]}" 9>&- || rc=$?
  exit $rc
}

latency_stats() {
  local from=$1 to=$2
  shift 2
  cat "$@" | awk -v from="$from" -v to="$to" '{ t = $5 + $6 / 1e6; if (t >= from && t <= to) print $3 / 1000 }' |
    sort -n | awk '{ v[NR] = $1; s += $1 } END {
      if (NR == 0) { print "n/a n/a n/a n/a 0"; exit }
      i50 = int(NR * 0.50 + 0.5); if (i50 < 1) i50 = 1
      i95 = int(NR * 0.95 + 0.5); if (i95 < 1) i95 = 1
      i99 = int(NR * 0.99 + 0.5); if (i99 < 1) i99 = 1
      printf "%.3f %.3f %.3f %.3f %d\n", s / NR, v[i50], v[i95], v[i99], NR }'
}

pgb_run() {
  local name=$1 script=$2 clients=$3 secs=$4 port=${5:-$PGPORT}
  local jobs=$(( clients < 2 ? 1 : 2 ))
  rm -f "$RAW/$name".log.*
  "$PGBENCH" -n -M prepared -h 127.0.0.1 -p "$port" -c "$clients" -j "$jobs" -T "$secs" \
    -l --log-prefix="$RAW/$name.log" -f "$script" >"$RAW/$name.out" 2>&1 || true
  local tps failed
  tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$RAW/$name.out" | head -1)
  failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$RAW/$name.out" | head -1)
  if [ -z "$tps" ]; then
    echo "pgbench $name failed:" >&2
    tail -5 "$RAW/$name.out" >&2
    echo "0 n/a n/a n/a ${failed:-?}"
    return
  fi
  local avg p50 p95 p99 n
  read -r avg p50 p95 p99 n <<<"$(latency_stats 0 9999999999 "$RAW/$name".log.*)"
  rm -f "$RAW/$name".log.*
  echo "$tps $p50 $p95 $p99 ${failed:-0}"
}

PROXY_BIN=""
PROXY_PIDS=()
proxy_build() {
  PROXY_BIN="$RAW/delayproxy"
  cc -O2 -Wall -Wextra -Werror -o "$PROXY_BIN" "$BENCH_DIR/proxy/delayproxy.c"
}
proxy_start() {  # proxy_start PORT DELAY_US: listens on 127.0.0.1:PORT, forwards to $PGPORT
  local port=$1 delay=$2 fifo="$RAW/proxy-$1.out" line=""
  "$PROXY_BIN" -l "$port" -t "$PGPORT" -d "$delay" >"$fifo" 2>&1 &
  PROXY_PIDS+=($!)
  local deadline=$(( $(date +%s) + 10 ))
  while ! grep -q '^ready$' "$fifo"; do
    if ! kill -0 "${PROXY_PIDS[-1]}" 2>/dev/null || [ "$(date +%s)" -ge "$deadline" ]; then
      echo "delayproxy on port $port did not start:" >&2; cat "$fifo" >&2; return 1
    fi
    sleep 0.05
  done
}
proxy_stop_all() {
  local p
  for p in "${PROXY_PIDS[@]+"${PROXY_PIDS[@]}"}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PROXY_PIDS[@]+"${PROXY_PIDS[@]}"}"; do wait "$p" 2>/dev/null || true; done
  PROXY_PIDS=()
}

# median_spread VALUES...: "median min max"
median_spread() {
  printf '%s\n' "$@" | grep -v '^n/a$' | sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "n/a n/a n/a"; exit }
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%s %s %s\n", m, v[1], v[NR] }'
}

# bench_database NAME: a fresh database NAME as PGDATABASE; SECS (from
# BENCH_SECONDS, default 10), OUT=bench/results, W a temporary directory
# removed at exit.
bench_database() {
  SECS=${BENCH_SECONDS:-10}
  OUT=bench/results
  mkdir -p "$OUT"
  W=$(mktemp -d)
  trap 'rm -rf "$W"' EXIT
  export PGDATABASE=$1
  dropdb --if-exists "$1" >/dev/null 2>&1 || true
  createdb "$1"
}

# has_function SIGNATURE: whether the function exists in this database.
has_function() {
  [ "$(psql -X -At -c "SELECT to_regprocedure('$1') IS NOT NULL")" = t ]
}

# run_group WORKLOAD NET CLIENTS PORT SECONDS STRATEGY=SCRIPT...
#     REPEATS rounds (default 3), each running every strategy once in turn
#     (interleaved, so drift on a shared machine hits all alike); after a
#     warm-up of WARMUP seconds (default 1, 0: none) per strategy. Appends
#     one row per strategy to $TSV:
#     workload net clients strategy tps_median tps_min tps_max p50 p95 p99
#     failed runs  (latencies: medians over the rounds, ms).
#     BEFORE_RUN, when set, is run before every pgbench run.
run_group() {
  local workload=$1 net=$2 clients=$3 port=$4 secs=$5
  shift 5
  local reps=${REPEATS:-3} r s name
  declare -A tps p50 p95 p99 failed
  local strategies=()
  for s in "$@"; do strategies+=("${s%%=*}"); done
  if [ "${WARMUP:-1}" != 0 ]; then
    for s in "$@"; do
      ${BEFORE_RUN:-true}
      pgb_run "warmup" "${s#*=}" "$clients" "${WARMUP:-1}" "$port" >/dev/null
    done
  fi
  for r in $(seq 1 "$reps"); do
    for s in "$@"; do
      name="$workload-$net-c$clients-${s%%=*}-r$r"
      ${BEFORE_RUN:-true}
      read -r t a b c f <<<"$(pgb_run "$name" "${s#*=}" "$clients" "$secs" "$port")"
      tps[${s%%=*}]+="$t "; p50[${s%%=*}]+="$a "; p95[${s%%=*}]+="$b "; p99[${s%%=*}]+="$c "
      failed[${s%%=*}]=$(( ${failed[${s%%=*}]:-0} + ${f//[^0-9]/} + 0 ))
    done
  done
  for s in "${strategies[@]}"; do
    read -r tm tl th <<<"$(median_spread ${tps[$s]})"
    read -r l50 _ _ <<<"$(median_spread ${p50[$s]})"
    read -r l95 _ _ <<<"$(median_spread ${p95[$s]})"
    read -r l99 _ _ <<<"$(median_spread ${p99[$s]})"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$workload" "$net" "$clients" "$s" \
      "$tm" "$tl" "$th" "$l50" "$l95" "$l99" "${failed[$s]}" "$reps" >>"$TSV"
    printf '  %-28s %-6s %3s clients  %-10s %10.0f tps (%.0f-%.0f)  p50 %s p95 %s p99 %s ms\n' \
      "$workload" "$net" "$clients" "$s" "$tm" "$tl" "$th" "$l50" "$l95" "$l99" >&2
  done
}
