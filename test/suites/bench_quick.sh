#!/usr/bin/env bash
# The benchmark command never rots: runs `bash bench/run.sh --quick` (tiny
# data, about a second per run) and checks what it wrote, not its numbers:
# bench/results/quick/REPORT.md with its sections and targets table, every
# chart it names as a PNG file, a positive throughput for every workload
# and strategy that must run, and the sweep and notification tables.
set -uo pipefail
cd "$(dirname "$0")/../.."

. test/lib/tap.sh
# holds DESCRIPTION COMMAND...: ok when COMMAND succeeds
holds() { local what=$1; shift; if "$@"; then ok "$what"; else not_ok "$what"; fi; }

# test/run_all.sh has built and installed harbor_orm and holds the install
# lock: the benchmark must not take it again.
out=bench/results/quick
if BENCH_PREPARED=1 timeout 600 bash bench/run.sh --quick >/tmp/bench_quick.$$.log 2>&1; then
  ok "bench/run.sh --quick exits 0"
else
  not_ok "bench/run.sh --quick exits 0"
  tail -40 /tmp/bench_quick.$$.log | sed 's/^/#   /'
fi
rm -f /tmp/bench_quick.$$.log

holds "REPORT.md written" test -s "$out/REPORT.md"
for section in "## Targets" "## The proxy itself" "## Reservations" "## Loading" \
               "## Sweeps of expired holds" "## Change notifications on the write path" \
               "absolute figures move between machines"; do
  holds "REPORT.md has \"$section\"" grep -qiF "$section" "$out/REPORT.md"
done
holds "REPORT.md states the machine" grep -qE '^\| PostgreSQL \| 15' "$out/REPORT.md"

tsv=$out/raw/results.tsv
# workload strategies... that must each have produced a figure
while read -r wl strategies; do
  for s in $strategies; do
    n=$(awk -F'\t' -v w="$wl" -v s="$s" '$1 == w && $4 == s && $5 + 0 > 0' "$tsv" 2>/dev/null | wc -l)
    holds "$wl: $s produced a throughput ($n rows)" test "$n" -ge 1
  done
done <<'EOF'
proxy_select1 select1
reserve_hot_flush-on client plpgsql cte harbor many3
reserve_hot_flush-off client plpgsql cte harbor many3
reserve_spread_flush-on client plpgsql cte harbor many3
reserve_spread_flush-off client plpgsql cte harbor many3
load_50_level1 n1 selectin json_agg load
load_50_level2 n1 selectin json_agg load
EOF
bad=$(awk -F'\t' '$5 + 0 <= 0' "$tsv" 2>/dev/null | wc -l)
holds "no strategy without a figure ($bad rows with 0 tps)" test "$bad" -eq 0
holds "both networks measured" test "$(cut -f2 "$tsv" | sort -u | grep -cE '^(direct|proxy)$')" -eq 2

holds "sweep: the worker's throughput" grep -qE 'background worker, one round .* holds/s' "$out/raw/sweep-1.txt"
holds "sweep: latency during a sweep" grep -q "during the worker's sweep" "$out/raw/sweep-1.txt"
holds "notify: the harbor trigger's tps" grep -qE 'harbor.enable_change_notify, keys +[0-9]+' "$out/raw/notify.txt"

charts=0
while read -r png; do
  [ -n "$png" ] || continue
  charts=$((charts + 1))
  holds "chart $png is a PNG" bash -c "head -c 8 '$out/$png' | od -An -c | grep -q 'P   N   G'"
  holds "REPORT.md shows $png" grep -qF "($png)" "$out/REPORT.md"
done <"$out/raw/charts.txt"
holds "one chart per workload ($charts charts)" test "$charts" -ge 10

finish
