#!/usr/bin/env bash
# Stock buckets under load, in a throwaway cluster (harbor_orm preloaded):
#  - a storm: 64 pgbench clients on a split hot item with uneven and empty
#    buckets (and a second split item, and unsplit ones): reserve_stock,
#    reserve_many mixing split and unsplit lines, rollbacks, checkouts
#    cancelled in the middle of the bucket code's waits (lock_timeout),
#    release, confirm, extend, sweeps, restocking UPDATEs of the stock
#    column, holds expiring during the run, and split_stock / merge_stock /
#    rebalancing under load; afterwards no client failed, no deadlock,
#    nothing oversold, stock column + buckets + active + confirmed
#    conserved per item, check_stock() empty, before and after a sweep;
#  - a sell-out: 64 clients of single-unit checkouts on a split item with
#    uneven and empty buckets, more attempts than units: exactly as many
#    successes as units, available exactly 0, and no refusal before the
#    last success began (no false sold-out);
#  - an immediate shutdown in the middle of a storm (pg_ctlcluster stop -m
#    immediate), restart, and the same invariants.
# Every wait polls with a deadline.
#
#   bash test/suites/buckets.sh         (starts its own cluster)
#   bash test/suites/buckets.sh inside  (run inside a cluster)
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh

if [ "${1:-}" != inside ]; then
  in_cluster -o max_connections=120 -o deadlock_timeout=200ms -- bash "$0" inside
  exit $?
fi

tests=0
failures=0
ok() { tests=$((tests + 1)); echo "ok $tests - $1"; }
not_ok() {
  tests=$((tests + 1)); failures=$((failures + 1))
  echo "not ok $tests - $1"
  [ $# -gt 1 ] && printf '#   %s\n' "$2"
}
check() { if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "got '$2', expected '$3'"; fi; }
q() { psql -X -A -t -q -v ON_ERROR_STOP=1 -d bkttest -c "$1" 2>&1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

createdb bkttest
psql -X -q -v ON_ERROR_STOP=1 -d bkttest <<'SQL' || { echo "setup failed"; exit 1; }
SET client_min_messages = warning;
CREATE EXTENSION harbor_orm;
-- no CHECK (stock_qty >= 0) on purpose: overselling would show as negative stock
CREATE TABLE items (id int PRIMARY KEY, stock_qty int NOT NULL);
INSERT INTO items VALUES (1, 3000), (2, 400), (3, 300), (4, 300), (5, 2000);
SELECT harbor.register_model('items');
SELECT harbor.enable_stock('items');
SELECT harbor.split_stock('items', 1, 16);
SELECT harbor.split_stock('items', 2, 4);
-- uneven and empty buckets: 1-4 of item 1 empty, their stock in 15 and 0
UPDATE harbor.stock_bucket SET stock = CASE WHEN bucket BETWEEN 1 AND 4 THEN 0
                                            WHEN bucket = 15 THEN stock + 600
                                            WHEN bucket = 0 THEN stock + 150 - 1
                                            ELSE stock END
 WHERE model = 'items' AND item_id = 1;
UPDATE harbor.stock_bucket SET stock = stock + 1 WHERE model = 'items' AND item_id = 1 AND bucket = 5;
CREATE SCHEMA t;
CREATE VIEW t.now_total AS
SELECT i.id, i.stock_qty
       + COALESCE((SELECT sum(b.stock) FROM harbor.stock_buckets b WHERE b.model = 'items' AND b.item_id = i.id), 0)
       + COALESCE((SELECT sum(r.qty) FROM harbor.stock_reservations r
                    WHERE r.model = 'items' AND r.item_id = i.id AND r.status IN ('active', 'confirmed')), 0) AS total
  FROM items i;
CREATE TABLE t.initial AS SELECT * FROM t.now_total;
CREATE TABLE t.restocks (item_id int, qty int);
CREATE TABLE t.refusals (at timestamptz, order_id text);
CREATE SEQUENCE t.refused;
CREATE SEQUENCE t.cancelled;
-- Expected refusals and waits cut short by lock_timeout are counted and swallowed so that
-- pgbench keeps going; anything else (a deadlock above all) fails the client.
CREATE FUNCTION t.try(call text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE call;
EXCEPTION
    WHEN SQLSTATE 'HB001' OR SQLSTATE 'HB003' THEN
        PERFORM nextval('t.refused');
    WHEN lock_not_available THEN
        PERFORM nextval('t.cancelled');
END $$;
-- a single-unit checkout for the sell-out, recording when it was refused
CREATE FUNCTION t.buy(o text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM harbor.reserve_stock(5, 1, o, '1 hour');
EXCEPTION WHEN SQLSTATE 'HB001' THEN
    INSERT INTO t.refusals VALUES (clock_timestamp(), o);
END $$;
SQL

# ---------------------------------------------------------------- the storm
cat >"$work/hot.sql" <<'EOF'
\set qty random(1, 3)
\set o random(1, 2000)
SELECT t.try(format('SELECT harbor.reserve_stock(1, %s, %L, %L)', :qty, 'o' || :o, (random() * 2 + 0.2) || ' seconds'));
EOF
cat >"$work/hot2.sql" <<'EOF'
\set o random(1, 2000)
SELECT t.try(format('SELECT harbor.reserve_stock(2, 1, %L, %L)', 'o' || :o, (random() * 2 + 0.2) || ' seconds'));
EOF
cat >"$work/many.sql" <<'EOF'
\set a random(1, 4)
\set b random(1, 4)
\set o random(1, 2000)
SELECT t.try(format('SELECT harbor.reserve_many(%L, %L, %L)', 'o' || :o,
             jsonb_build_array(jsonb_build_object('item_id', :a, 'qty', 1),
                               jsonb_build_object('item_id', :b, 'qty', 2)),
             (random() * 2 + 0.2) || ' seconds'));
EOF
cat >"$work/rollback.sql" <<'EOF'
\set o random(1, 2000)
BEGIN;
SELECT t.try(format('SELECT harbor.reserve_stock(1, 2, %L)', 'rb' || :o));
SELECT t.try(format('SELECT harbor.reserve_many(%L, %L)', 'rb' || :o, '[{"item_id": 2, "qty": 1}, {"item_id": 3, "qty": 1}]'));
ROLLBACK;
EOF
cat >"$work/cancel.sql" <<'EOF'
\set o random(1, 2000)
BEGIN;
SET LOCAL lock_timeout = '1ms';
SELECT t.try(format('SELECT harbor.reserve_stock(1, 1, %L, %L)', 'o' || :o, '2 seconds'));
COMMIT;
EOF
cat >"$work/release.sql" <<'EOF'
\set o random(1, 2000)
SELECT harbor.release_reservation('o' || :o);
EOF
cat >"$work/release_one.sql" <<'EOF'
\set o random(1, 2000)
\set item random(1, 4)
SELECT harbor.release_reservation('o' || :o, :item);
EOF
cat >"$work/confirm.sql" <<'EOF'
\set o random(1, 2000)
SELECT t.try(format('SELECT harbor.confirm_reservation(%L)', 'o' || :o));
EOF
cat >"$work/extend.sql" <<'EOF'
\set o random(1, 2000)
SELECT harbor.extend_reservation('o' || :o, '1 second');
EOF
cat >"$work/sweep.sql" <<'EOF'
\set n random(1, 50)
SELECT harbor._sweep_batch(:n);
SELECT harbor.sweep_expired(20);
EOF
cat >"$work/restock.sql" <<'EOF'
\set item random(1, 4)
\set n random(1, 5)
WITH r AS (UPDATE items SET stock_qty = stock_qty + :n WHERE id = :item RETURNING id)
INSERT INTO t.restocks SELECT id, :n FROM r;
EOF
cat >"$work/layout.sql" <<'EOF'
\set n random(2, 24)
\set what random(1, 4)
SELECT CASE :what WHEN 1 THEN harbor.split_stock('items', 1, :n)
                  WHEN 2 THEN harbor.split_stock('items', 2, :n)
                  WHEN 3 THEN harbor.merge_stock('items', 2)
                  ELSE harbor.split_stock('items', 3, 1) + harbor.merge_stock('items', 3) END;
EOF

storm() {  # storm SECONDS OUTPUT
  pgbench -n -c 64 -j 2 -T "$1" -d bkttest \
    -f "$work/hot.sql@20" -f "$work/hot2.sql@4" -f "$work/many.sql@4" -f "$work/rollback.sql@2" \
    -f "$work/cancel.sql@2" -f "$work/release.sql@4" -f "$work/release_one.sql@2" \
    -f "$work/confirm.sql@1" -f "$work/extend.sql@1" -f "$work/sweep.sql@1" \
    -f "$work/restock.sql@1" -f "$work/layout.sql@1" >"$2" 2>&1
}

conserved="SELECT count(*) FROM t.initial i JOIN t.now_total n USING (id)
  WHERE i.total + COALESCE((SELECT sum(qty) FROM t.restocks r WHERE r.item_id = i.id), 0) <> n.total"
invariants() {  # invariants LABEL
  check "$1: nothing oversold" "$(q "SELECT count(*) FROM items WHERE stock_qty < 0")" "0"
  check "$1: stock column + buckets + active + confirmed conserved per item" "$(q "$conserved")" "0"
  q "SELECT 'item ' || i.id || ': initial ' || i.total || ', now ' || n.total || ', restocked '
            || COALESCE((SELECT sum(qty) FROM t.restocks r WHERE r.item_id = i.id), 0)
       FROM t.initial i JOIN t.now_total n USING (id)
      WHERE i.total + COALESCE((SELECT sum(qty) FROM t.restocks r WHERE r.item_id = i.id), 0) <> n.total" | sed 's/^/# /' 
  check "$1: check_stock() is empty" "$(q "SELECT count(*) FROM harbor.check_stock()")" "0"
}

echo "# storm: 64 clients for 20 seconds"
storm 20 "$work/pgbench.out"
rc=$?
check "pgbench finished without errors" "$rc" "0"
grep -E "^(number of (transactions actually processed|failed transactions)|tps)" "$work/pgbench.out" | sed 's/^/# /'
if grep -qiE "deadlock|aborted|error" "$work/pgbench.out"; then
  not_ok "no errors or deadlocks in the pgbench output" "$(grep -m5 -iE 'deadlock|aborted|error' "$work/pgbench.out")"
else
  ok "no errors or deadlocks in the pgbench output"
fi
processed=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$work/pgbench.out")
if [ "${processed:-0}" -gt 1000 ]; then ok "clients did real work ($processed transactions)"; else not_ok "clients did real work" "only ${processed:-0} transactions"; fi
cancelled=$(q "SELECT last_value - 1 + is_called::int FROM t.cancelled")
if [ "${cancelled:-0}" -gt 0 ]; then ok "some checkouts were cancelled in a wait ($cancelled)"; else not_ok "some checkouts were cancelled in a wait" "$cancelled"; fi
check "no deadlocks in pg_stat_database" \
  "$(q "SELECT pg_stat_force_next_flush(); SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()" | tail -1)" "0"
invariants "after the storm"
q "SELECT path || ' ' || calls FROM harbor.stock_bucket_counters()" | sed 's/^/# paths: /'
paths=$(q "SELECT count(*) FROM harbor.stock_bucket_counters() WHERE calls > 0")
check "checkouts took all four paths" "$paths" "4"
q "SELECT status, count(*), sum(qty) FROM harbor.stock_reservations GROUP BY 1 ORDER BY 1" | sed 's/^/# holds: /'

# Every hold expires within a few seconds of the end; a sweep then closes them.
deadline=$((SECONDS + 30))
while [ "$(q "SELECT count(*) FROM harbor.stock_reservations WHERE status = 'active' AND expires_at > now()")" != 0 ] \
      && [ $SECONDS -lt $deadline ]; do
  sleep 0.5
done
q "SELECT harbor.sweep_expired()" >/dev/null
check "no active hold left after the sweep" \
  "$(q "SELECT count(*) FROM harbor.stock_reservations WHERE status = 'active'")" "0"
invariants "after the sweep"

# ---------------------------------------------------------------- sell-out
q "SELECT harbor.split_stock('items', 5, 16)" >/dev/null
# uneven, with empty buckets: 0-5 empty, their stock in 15
q "UPDATE harbor.stock_bucket b SET stock = CASE WHEN b.bucket <= 5 THEN 0
          WHEN b.bucket = 15 THEN b.stock + (SELECT sum(stock) FROM harbor.stock_bucket x
                                              WHERE x.model = 'items' AND x.item_id = 5 AND x.bucket <= 5)
          ELSE b.stock END
    WHERE b.model = 'items' AND b.item_id = 5" >/dev/null
units=$(q "SELECT available FROM harbor.stock_status(5)")
check "the sell-out item has 2000 units" "$units" "2000"
cat >"$work/buy.sql" <<'EOF'
SELECT t.buy('s' || :client_id || '-' || nextval('t.refused'));
EOF
echo "# sell-out: 64 clients, 50 single-unit checkouts each, 2000 units"
pgbench -n -c 64 -j 2 -t 50 -d bkttest -f "$work/buy.sql" >"$work/sellout.out" 2>&1
check "sell-out pgbench finished without errors" "$?" "0"
grep -E "^(number of (transactions actually processed|failed transactions)|tps|latency)" "$work/sellout.out" | sed 's/^/# /'
check "exactly as many successes as units" \
  "$(q "SELECT count(*) FROM harbor.stock_reservations WHERE item_id = 5 AND status = 'active'")" "$units"
check "available exactly 0" "$(q "SELECT available FROM harbor.stock_status(5)")" "0"
check "every attempt either succeeded or was refused" "$(q "SELECT count(*) FROM t.refusals")" "$((64 * 50 - units))"
check "no refusal before the last success began (no false sold-out)" \
  "$(q "SELECT count(*) FROM t.refusals f WHERE EXISTS (SELECT FROM harbor.stock_reservations r
          WHERE r.item_id = 5 AND r.created_at > f.at)")" "0"
invariants "after the sell-out"

# ------------------------------------------------- immediate shutdown mid-run
echo "# storm, stopped -m immediate after 4 seconds"
storm 30 "$work/crash.out" &
bench=$!
sleep_until=$((SECONDS + 4))
while [ $SECONDS -lt $sleep_until ]; do sleep 0.5; done
pg_ctlcluster 15 regress stop -m immediate >/dev/null 2>&1
wait $bench
pg_ctlcluster 15 regress start >/dev/null 2>&1
deadline=$((SECONDS + 60))
until q "SELECT 1" >/dev/null 2>&1 || [ $SECONDS -ge $deadline ]; do sleep 0.5; done
check "the server came back" "$(q "SELECT 1")" "1"
invariants "after the crash"
check "reserving on the split item works after the crash" \
  "$(q "SELECT qty FROM harbor.reserve_stock(1, 1, 'after-crash', '1 hour')" 2>&1 | tail -1)" "1"
check "releasing works after the crash" "$(q "SELECT harbor.release_reservation('after-crash')")" "1"
q "UPDATE harbor.stock_reservations SET expires_at = now() - interval '1 second' WHERE status = 'active'" >/dev/null
q "SELECT harbor.sweep_expired()" >/dev/null
check "no active hold left after the sweep" \
  "$(q "SELECT count(*) FROM harbor.stock_reservations WHERE status = 'active'")" "0"
invariants "after the crash and the sweep"
q "SELECT harbor.merge_stock('items', 1)" >/dev/null
invariants "after merging"

echo "1..$tests"
[ "$failures" -eq 0 ]
