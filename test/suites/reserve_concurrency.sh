#!/usr/bin/env bash
# Stock reservations under concurrency, in a throwaway cluster:
#  - 32 pgbench clients hammer four items of limited stock with a mix of
#    reserve_stock, reserve_many, release (whole order and one item),
#    confirm, extend, sweeps and two external writers (a plain restocking
#    UPDATE, a foreign-key insert), with holds expiring during the
#    run; afterwards nothing is oversold, stock + active + confirmed is
#    conserved per item, no client failed, no deadlock happened and
#    harbor.check_stock() is empty;
#  - a hold's row lock does not block inserts that reference the item by
#    foreign key, while it does block FOR UPDATE;
#  - under REPEATABLE READ a concurrent reservation surfaces as 40001.
# Every wait polls with a deadline.
#
#   bash test/suites/reserve_concurrency.sh         (starts its own cluster)
#   bash test/suites/reserve_concurrency.sh inside  (run inside a cluster)
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh

if [ "${1:-}" != inside ]; then
  in_cluster -- bash "$0" inside
  exit $?
fi

. test/lib/tap.sh
q() { psql_in rsvtest "$1"; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

createdb rsvtest
psql -X -q -v ON_ERROR_STOP=1 -d rsvtest <<'SQL' || { echo "setup failed"; exit 1; }
SET client_min_messages = warning;
CREATE EXTENSION harbor_orm;
CREATE EXTENSION dblink;
-- no CHECK (stock_qty >= 0) on purpose: overselling would show as negative stock
CREATE TABLE items (id int PRIMARY KEY, name text, stock_qty int NOT NULL);
INSERT INTO items SELECT g, 'item ' || g, 60 FROM generate_series(1, 4) g;
CREATE TABLE order_lines (id bigserial PRIMARY KEY, item_id int NOT NULL REFERENCES items (id));
SELECT harbor.register_model('items');
SELECT harbor.enable_stock('items');
CREATE SCHEMA t;
CREATE TABLE t.initial AS SELECT id, stock_qty FROM items;
CREATE TABLE t.restocks (item_id int, qty int);
CREATE SEQUENCE t.refused;
-- Expected refusals are counted and swallowed so that pgbench keeps going;
-- anything else (a deadlock above all) fails the client.
CREATE FUNCTION t.try(call text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE call;
EXCEPTION WHEN SQLSTATE 'HB001' OR SQLSTATE 'HB003' THEN
    PERFORM nextval('t.refused');
END $$;
SQL

cat >"$work/reserve.sql" <<'EOF'
\set item random(1, 4)
\set qty random(1, 3)
\set o random(1, 400)
SELECT t.try(format('SELECT harbor.reserve_stock(%s, %s, %L, %L)', :item, :qty, 'o' || :o, (random() * 2 + 0.2) || ' seconds'));
EOF
cat >"$work/many.sql" <<'EOF'
\set a random(1, 4)
\set b random(1, 4)
\set qa random(1, 2)
\set qb random(1, 2)
\set o random(1, 400)
SELECT t.try(format('SELECT harbor.reserve_many(%L, %L, %L)', 'o' || :o,
             jsonb_build_array(jsonb_build_object('item_id', :a, 'qty', :qa),
                               jsonb_build_object('item_id', :b, 'qty', :qb)),
             (random() * 2 + 0.2) || ' seconds'));
EOF
cat >"$work/release.sql" <<'EOF'
\set o random(1, 400)
SELECT harbor.release_reservation('o' || :o);
EOF
cat >"$work/release_one.sql" <<'EOF'
\set o random(1, 400)
\set item random(1, 4)
SELECT harbor.release_reservation('o' || :o, :item);
EOF
cat >"$work/confirm.sql" <<'EOF'
\set o random(1, 400)
SELECT t.try(format('SELECT harbor.confirm_reservation(%L)', 'o' || :o));
EOF
cat >"$work/extend.sql" <<'EOF'
\set o random(1, 400)
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

# an external writer referencing the items by foreign key (KEY SHARE locks)
cat >"$work/fk.sql" <<'EOF'
\set item random(1, 4)
INSERT INTO order_lines (item_id) VALUES (:item);
EOF

# a watcher that records the lowest stock seen while the clients run
cat >"$work/watch.sql" <<'EOF'
SELECT min(stock_qty) FROM items;
EOF

echo "# 32 clients for 20 seconds"
pgbench -n -c 32 -j 2 -T 20 -d rsvtest \
  -f "$work/reserve.sql@10" -f "$work/many.sql@4" -f "$work/release.sql@3" \
  -f "$work/release_one.sql@2" -f "$work/confirm.sql@1" -f "$work/extend.sql@1" \
  -f "$work/sweep.sql@1" -f "$work/restock.sql@1" -f "$work/fk.sql@1" >"$work/pgbench.out" 2>&1
rc=$?
check "pgbench finished without errors" "$rc" "0"
grep -E "^(number of (transactions actually processed|failed transactions)|tps)" "$work/pgbench.out" | sed 's/^/# /'
if grep -qiE "deadlock|aborted|error" "$work/pgbench.out"; then
  not_ok "no errors or deadlocks in the pgbench output" "$(grep -m5 -iE 'deadlock|aborted|error' "$work/pgbench.out")"
else
  ok "no errors or deadlocks in the pgbench output"
fi
check "no failed transactions (deadlocks, serialization failures)" \
  "$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$work/pgbench.out")" "0"
processed=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$work/pgbench.out")
if [ "${processed:-0}" -gt 1000 ]; then ok "clients did real work ($processed transactions)"; else not_ok "clients did real work" "only ${processed:-0} transactions"; fi
refused=$(q "SELECT last_value - 1 + is_called::int FROM t.refused")
if [ "${refused:-0}" -gt 0 ]; then ok "stock ran short and was refused ($refused times)"; else not_ok "stock ran short at least once" "$refused"; fi

# The stats of finished backends are flushed when they exit.
check "no deadlocks in pg_stat_database" \
  "$(q "SELECT pg_stat_force_next_flush(); SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()" | tail -1)" "0"
check "nothing oversold" "$(q "SELECT count(*) FROM items WHERE stock_qty < 0")" "0"
conserved="SELECT count(*) FROM t.initial i
  WHERE i.stock_qty + COALESCE((SELECT sum(qty) FROM t.restocks r WHERE r.item_id = i.id), 0)
     <> (SELECT stock_qty FROM items WHERE id = i.id)
      + COALESCE((SELECT sum(qty) FROM harbor.stock_reservations s
                   WHERE s.model = 'items' AND s.item_id = i.id AND s.status IN ('active', 'confirmed')), 0)"
check "stock + active + confirmed conserved per item" "$(q "$conserved")" "0"
check "check_stock() is empty" "$(q "SELECT count(*) FROM harbor.check_stock()")" "0"
q "SELECT status, count(*), sum(qty) FROM harbor.stock_reservations GROUP BY 1 ORDER BY 1" | sed 's/^/# holds: /'

# Every hold expires within 3 seconds of the end; a sweep then closes them.
deadline=$((SECONDS + 30))
while [ "$(q "SELECT count(*) FROM harbor.stock_reservations WHERE status = 'active' AND expires_at > now()")" != 0 ] \
      && [ $SECONDS -lt $deadline ]; do
  sleep 0.5
done
q "SELECT harbor.sweep_expired()" >/dev/null
check "no active hold left after the sweep" \
  "$(q "SELECT count(*) FROM harbor.stock_reservations WHERE status = 'active'")" "0"
check "still conserved after the sweep" "$(q "$conserved")" "0"
check "check_stock() still empty" "$(q "SELECT count(*) FROM harbor.check_stock()")" "0"

# --- a hold's lock does not block foreign-key inserts, but does block FOR UPDATE
psql -X -q -d rsvtest -c "BEGIN" -c "SELECT harbor.reserve_stock(1, 1, 'fk-holder', '1 minute')" \
  -c "SELECT pg_sleep(15)" -c "COMMIT" >/dev/null 2>&1 &
holder=$!
deadline=$((SECONDS + 10))
while [ "$(q "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(15)' AND state = 'active'")" != 1 ] \
      && [ $SECONDS -lt $deadline ]; do
  sleep 0.2
done
check "FOR UPDATE waits for the hold's lock" \
  "$(psql -X -A -t -q -d rsvtest -c "SET lock_timeout = '300ms'" -c "SELECT id FROM items WHERE id = 1 FOR UPDATE" 2>&1 | grep -c 'lock timeout')" "1"
check "a foreign-key insert does not wait for it" \
  "$(psql -X -A -t -q -d rsvtest -c "SET lock_timeout = '5s'" -c "INSERT INTO order_lines (item_id) VALUES (1) RETURNING 'inserted'" 2>&1)" "inserted"
q "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(15)'" >/dev/null
wait $holder

# --- REPEATABLE READ: a concurrent reservation of the same item is a serialization failure
rr=$(psql -X -A -t -q -d rsvtest 2>&1 <<'SQL'
\set VERBOSITY sqlstate
UPDATE items SET stock_qty = 10 WHERE id = 2;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) FROM items;
-- this cluster's own port and socket: another cluster may be on the default port
SELECT * FROM dblink(format('dbname=%s port=%s host=%s', current_database(), current_setting('port'),
                            split_part(current_setting('unix_socket_directories'), ',', 1)),
                     'SELECT qty FROM harbor.reserve_stock(2, 1, ''rr-other'')') AS t(qty int);
SELECT harbor.reserve_stock(2, 1, 'rr-mine');
ROLLBACK;
SQL
)
check "REPEATABLE READ conflict raises 40001" "$(echo "$rr" | grep -c 'ERROR:  40001')" "1"

echo "1..$tests"
[ "$failures" -eq 0 ]
