#!/usr/bin/env bash
# Expiry sweep benchmark.
#
#   bash bench/sweep.sh [holds]        (default 100000 expired holds)
#
# Builds and installs harbor_orm under the test lock, starts a throwaway
# cluster with harbor_orm preloaded and measures, on the same data (holds
# expired over 10,000 items, qty 1-3):
#   1. release throughput, expired holds per second:
#      - baseline: set-based SQL, DELETE ... RETURNING + UPDATE ... FROM,
#        one transaction per batch of 1000 (a DO loop with COMMIT);
#      - harbor._sweep_batch(1000) called the same way;
#      - harbor.sweep_expired(1000), one call;
#      - the background worker (one round, timed from its status);
#   2. reservation latency (avg, p50, p95, p99) with 32 pgbench clients
#      calling harbor.reserve_stock(), without a sweep and while the worker
#      sweeps the expired holds, and the ratio (BENCH_SECONDS, default 10,
#      sets the length of a run);
#   3. after the concurrent run: deadlocks in the log, failed pgbench
#      transactions, harbor.check_stock() and stock conservation.
# Raw pgbench logs go to bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" != "--inside" ]; then
  holds=${1:-100000}
  mkdir -p bench/results
  . bench/lib/common.sh
  bench_cluster "$0" --inside "$holds" -- \
    -o harbor_orm.sweeper_databases=bench -o harbor_orm.sweep_interval=1h \
    -o max_connections=100 -o shared_buffers=256MB
fi

holds=$2
. bench/lib/common.sh      # latency_stats
export PGDATABASE=bench
results=bench/results
items=10000
clients=32
duration=${BENCH_SECONDS:-10}

q() { psql -X -A -t -q -v ON_ERROR_STOP=1 -c "$1"; }
server_log() { cat "$(dirname "$PG_CLUSTER_CONF_ROOT")"/log/*.log; }
# Milliseconds a statement takes, from psql's \timing.
timed() {
  psql -X -q -v ON_ERROR_STOP=1 -c '\timing on' -c "$1" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1
}
rate() { awk -v n="$1" -v ms="$2" 'BEGIN { printf "%.0f", n / (ms / 1000) }'; }

# bench/run.sh runs this script several times in one cluster
dropdb --if-exists bench
createdb bench
psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<SQL
SET client_min_messages = warning;
CREATE EXTENSION harbor_orm;
CREATE TABLE public.items (id integer PRIMARY KEY,
                           stock_qty integer NOT NULL CHECK (stock_qty >= 0));
INSERT INTO public.items SELECT g, 1000000 FROM generate_series(1, $items) g;
SELECT harbor.register_model('public.items');
SELECT harbor.enable_stock('items');

-- Fresh data: n active holds that expired 5 minutes ago, stock taken.
CREATE PROCEDURE public.bench_reset(n integer) LANGUAGE plpgsql AS \$\$
BEGIN
  TRUNCATE harbor.stock_reservations;
  UPDATE public.items SET stock_qty = 1000000;
  INSERT INTO harbor.stock_reservations (model, item_id, order_id, qty, status, created_at, expires_at)
  SELECT 'items', 1 + g % $items, 'expired-' || g, 1 + g % 3, 'active',
         now() - interval '20 minutes', now() - interval '5 minutes' - (g % 997) * interval '1 ms'
    FROM generate_series(1, n) g;
  UPDATE public.items i SET stock_qty = i.stock_qty - s.q
    FROM (SELECT item_id, sum(qty) AS q FROM harbor.stock_reservations GROUP BY item_id) s
   WHERE i.id = s.item_id;
END \$\$;
SQL

reset() {
  q "CALL public.bench_reset($holds)"
  q "VACUUM ANALYZE harbor.stock_reservations"
  q "VACUUM ANALYZE public.items"
  q "CHECKPOINT"
}

active() { q "SELECT count(*) FROM harbor.stock_reservations WHERE status = 'active'"; }

# The worker's round: reload with a 3 s interval (the next round starts 3 s
# after this one ends, which leaves time to read its figures), wait for the round that
# released the holds, and read its duration from the status.
worker_round() {
  local row="" deadline=$(( $(date +%s) + 120 )) since
  since=$(q "SELECT extract(epoch FROM clock_timestamp())")
  q "ALTER SYSTEM SET harbor_orm.sweep_interval = '3s'" >/dev/null
  q "SELECT pg_reload_conf()" >/dev/null
  while [ -z "$row" ]; do
    row=$(q "SELECT released_last, round(extract(epoch FROM last_run_end - last_run_start) * 1000, 3),
                    extract(epoch FROM last_run_start), extract(epoch FROM last_run_end)
               FROM harbor.sweeper_status()
              WHERE database = 'bench' AND state = 'ok' AND released_last >= $1
                AND extract(epoch FROM last_run_start) >= $since")
    if [ "$(date +%s)" -ge "$deadline" ]; then echo "worker round not seen" >&2; exit 1; fi
    [ -z "$row" ] && sleep 0.05
  done
  q "ALTER SYSTEM SET harbor_orm.sweep_interval = '1h'" >/dev/null
  q "SELECT pg_reload_conf()" >/dev/null
  echo "$row"
}

echo "== expiry sweep benchmark: $holds expired holds over $items items, $(nproc) cores"
echo
echo "-- 1. release throughput (one session, batches of 1000, one transaction each)"

# set_based CLOSE: the set-based SQL loop, one transaction per batch of
# 1000; CLOSE is how a batch of expired holds is closed, given the rows as
#   WHERE r.id IN (...)  and returning item_id and qty.
set_based() {
  timed "DO \$\$
DECLARE n bigint;
BEGIN
  LOOP
    WITH d AS (
      $1
       WHERE r.id IN (SELECT x.id FROM harbor.stock_reservations x
                       WHERE x.status = 'active' AND x.expires_at <= now()
                       ORDER BY x.expires_at LIMIT 1000
                         FOR UPDATE SKIP LOCKED)
      RETURNING r.item_id, r.qty
    ), u AS (
      UPDATE public.items t SET stock_qty = t.stock_qty + s.q
        FROM (SELECT d.item_id, sum(d.qty) AS q FROM d GROUP BY d.item_id) s
       WHERE t.id = s.item_id
      RETURNING 1
    )
    SELECT count(*) INTO n FROM d;
    COMMIT;
    EXIT WHEN n < 1000;
  END LOOP;
END \$\$"
}

reset
ms=$(set_based "DELETE FROM harbor.stock_reservations r")
left=$(active)
base_rate=$(rate "$holds" "$ms")
printf '%-52s %10s ms %10s holds/s  (left active: %s)\n' "baseline SQL (DELETE RETURNING + UPDATE FROM)" "$ms" "$base_rate" "$left"

# The same, keeping the holds as harbor does (status 'expired', closed_at)
# instead of deleting them: shows what the bookkeeping costs.
reset
ms=$(set_based "UPDATE harbor.stock_reservations r SET status = 'expired', closed_at = now()")
left=$(active)
printf '%-52s %10s ms %10s holds/s  (left active: %s)\n' "same, UPDATE status = 'expired' instead of DELETE" "$ms" "$(rate "$holds" "$ms")" "$left"

reset
ms=$(timed "DO \$\$
BEGIN
  LOOP
    EXIT WHEN harbor._sweep_batch(1000) < 1000;
    COMMIT;
  END LOOP;
END \$\$")
left=$(active)
batch_rate=$(rate "$holds" "$ms")
printf '%-52s %10s ms %10s holds/s  (left active: %s)\n' "harbor._sweep_batch(1000) per transaction" "$ms" "$batch_rate" "$left"

reset
ms=$(timed "SELECT harbor.sweep_expired(1000)")
left=$(active)
printf '%-52s %10s ms %10s holds/s  (left active: %s)\n' "harbor.sweep_expired(1000), one call" "$ms" "$(rate "$holds" "$ms")" "$left"

reset
read -r released ms _ _ <<<"$(worker_round "$holds" | tr '|' ' ')"
left=$(active)
worker_rate=$(rate "$released" "$ms")
printf '%-52s %10s ms %10s holds/s  (left active: %s)\n' "background worker, one round" "$ms" "$worker_rate" "$left"
printf '%-52s %10s\n' "worker / baseline" "$(awk -v a="$worker_rate" -v b="$base_rate" 'BEGIN { printf "%.2fx", a / b }')"

# Purge cost when nothing is old enough: every round pays it.
ms=$(timed "SELECT harbor._purge_closed(1000)")
printf '%-52s %10s ms  (%s closed holds, none past retention)\n' "harbor._purge_closed(1000), nothing to purge" "$ms" "$holds"

echo
echo "-- 2. reservation latency, $clients clients, harbor.reserve_stock(), ${duration}s runs"
cat > "$results/reserve.pgbench" <<'EOF'
\set item random(1, 10000)
\set o random(1, 2000000000)
SELECT harbor.reserve_stock(:item, 1, 'pgb-' || :client_id || '-' || :o, '15 minutes');
EOF
rm -f "$results"/pgbench_log.* "$results"/nosweep* "$results"/sweep*

reset
pgbench -n -M prepared -c "$clients" -j 2 -T "$duration" -f "$results/reserve.pgbench" \
  -l --log-prefix="$results/nosweep" > "$results/nosweep.out" 2>&1
read -r n_avg n_p50 n_p95 n_p99 n_cnt <<<"$(latency_stats 0 9999999999 "$results"/nosweep.[0-9]*)"
n_tps=$(sed -n '/^tps = /{s/^tps = \([0-9.]*\).*/\1/p;q}' "$results/nosweep.out")

reset
pgbench -n -M prepared -c "$clients" -j 2 -T "$((duration * 2))" -f "$results/reserve.pgbench" \
  -l --log-prefix="$results/sweep" > "$results/sweep.out" 2>&1 &
bench_pid=$!
sleep 2
# The sweep: from the reload that lets the worker run until no expired hold
# of the reset is left active, on the server's clock.
sweep_from=$(q "SELECT extract(epoch FROM clock_timestamp())")
q "ALTER SYSTEM SET harbor_orm.sweep_interval = '1s'" >/dev/null
q "SELECT pg_reload_conf()" >/dev/null
deadline=$(( $(date +%s) + 60 ))
while [ "$(q "SELECT count(*) FROM harbor.stock_reservations WHERE status = 'active' AND expires_at <= now()")" != 0 ]; do
  [ "$(date +%s)" -ge "$deadline" ] && { echo "the sweep did not finish within 60 s" >&2; break; }
  sleep 0.1
done
sweep_to=$(q "SELECT extract(epoch FROM clock_timestamp())")
q "ALTER SYSTEM SET harbor_orm.sweep_interval = '1h'" >/dev/null
q "SELECT pg_reload_conf()" >/dev/null
sweep_ms=$(awk -v a="$sweep_from" -v b="$sweep_to" 'BEGIN { printf "%.0f", (b - a) * 1000 }')
released=$(q "SELECT count(*) FROM harbor.stock_reservations WHERE status = 'expired'")
wait "$bench_pid" || { echo "pgbench failed:"; cat "$results/sweep.out"; exit 1; }
read -r s_avg s_p50 s_p95 s_p99 s_cnt <<<"$(latency_stats "$sweep_from" "$sweep_to" "$results"/sweep.[0-9]*)"
s_tps=$(sed -n '/^tps = /{s/^tps = \([0-9.]*\).*/\1/p;q}' "$results/sweep.out")

printf '%-40s %9s %9s %9s %9s %9s %9s\n' "" "avg ms" "p50 ms" "p95 ms" "p99 ms" "txns" "tps"
printf '%-40s %9s %9s %9s %9s %9s %9s\n' "no sweep" "$n_avg" "$n_p50" "$n_p95" "$n_p99" "$n_cnt" "$n_tps"
printf '%-40s %9s %9s %9s %9s %9s %9s\n' "during the worker's sweep ($sweep_ms ms)" "$s_avg" "$s_p50" "$s_p95" "$s_p99" "$s_cnt" "(whole run $s_tps)"
printf '%-40s %9s %9s %9s %9s\n' "ratio (during / without)" \
  "$(awk -v a="$s_avg" -v b="$n_avg" 'BEGIN { printf "%.2fx", a / b }')" \
  "$(awk -v a="$s_p50" -v b="$n_p50" 'BEGIN { printf "%.2fx", a / b }')" \
  "$(awk -v a="$s_p95" -v b="$n_p95" 'BEGIN { printf "%.2fx", a / b }')" \
  "$(awk -v a="$s_p99" -v b="$n_p99" 'BEGIN { printf "%.2fx", a / b }')"
echo "(sweep window $sweep_from - $sweep_to, pgbench run $(awk '{ t = $5 + $6 / 1e6; if (!a || t < a) a = t; if (t > b) b = t } END { printf "%.3f - %.3f", a, b }' "$results"/sweep.[0-9]*);"
echo " the worker released all $released expired holds, 1 s interval, while the clients reserved)"

echo
echo "-- 3. after the concurrent run"
failed=$(sed -n '/^number of failed transactions: /{s/^number of failed transactions: \([0-9]*\).*/\1/p;q}' "$results/sweep.out")
printf '%-52s %s\n' "failed pgbench transactions" "${failed:-0}"
printf '%-52s %s\n' "aborted pgbench clients" "$(grep -c 'aborted' "$results/sweep.out" || true)"
printf '%-52s %s\n' "deadlocks in the server log" "$(server_log | grep -c 'deadlock detected' || true)"
printf '%-52s %s\n' "harbor.check_stock() problems" "$(q "SELECT count(*) FROM harbor.check_stock()")"
printf '%-52s %s\n' "items with negative stock" "$(q "SELECT count(*) FROM public.items WHERE stock_qty < 0")"
printf '%-52s %s\n' "stock + active + confirmed = initial total" \
  "$(q "SELECT (SELECT sum(stock_qty) FROM public.items)
             + (SELECT coalesce(sum(qty), 0) FROM harbor.stock_reservations WHERE status IN ('active', 'confirmed'))
             = $items::bigint * 1000000")"
