#!/usr/bin/env bash
# Reservations partitioned with PL/Proxy (scale/harbor_proxy.sql), in one
# throwaway cluster: four partition databases running harbor_orm unchanged,
# each keeping only its items, and a proxy database.
#  - a reservation through the proxy lands on the partition that owns the item;
#  - order calls (confirm, release, extend) reach every partition;
#  - concurrent reservations through the proxy never oversell (pgbench), and
#    stock + active + confirmed is conserved per partition and in total;
#  - a cross-partition reserve_many is all or nothing: a refusal on one
#    partition leaves nothing held on the others;
#  - check_stock is empty on every partition.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh

in_cluster -o max_connections=200 -- bash -s <<'INNER'
set -uo pipefail
fail=0
check() {  # check NAME EXPECTED ACTUAL
  if [ "$2" = "$3" ]; then echo "ok - $1"; else echo "not ok - $1: expected [$2], got [$3]"; fail=1; fi
}
q() { psql -X -qAt -v ON_ERROR_STOP=1 "$@"; }
NPART=4
ITEMS=64
UNITS=10

# ---- partitions: harbor_orm as it is, each with only the items it owns
for p in $(seq 0 $((NPART - 1))); do
  createdb "part$p"
  q -d "part$p" >/dev/null <<SQL
CREATE EXTENSION harbor_orm;
CREATE TABLE variants (id bigint PRIMARY KEY, sku text, stock_qty integer NOT NULL CHECK (stock_qty >= 0));
SELECT harbor.register_model('variants');
SELECT harbor.enable_stock('variants', 'stock_qty');
INSERT INTO variants SELECT g, 'SKU-' || g, $UNITS FROM generate_series(1, $ITEMS) g
 WHERE hashint8(g) & ($NPART - 1) = $p;
SQL
done

# ---- proxy
createdb proxy
q -d proxy -f scale/harbor_proxy.sql >/dev/null || { echo "not ok - harbor_proxy.sql failed"; exit 1; }
conns=""
for p in $(seq 0 $((NPART - 1))); do
  conns="$conns${conns:+,}'host=${PGHOST:-localhost} port=${PGPORT:-5432} dbname=part$p password=${PGPASSWORD:-}'"
done
check "four partitions configured" "4" "$(q -d proxy -c "SELECT harbor_proxy.set_partitions(ARRAY[$conns])")"
out=$(q -d proxy -c "SELECT harbor_proxy.set_partitions(ARRAY['dbname=a','dbname=b','dbname=c'])" 2>&1)
case "$out" in *"power of two"*) echo "ok - a count that is not a power of two is refused" ;;
  *) echo "not ok - three partitions accepted: $out"; fail=1 ;; esac

# ---- item calls land on the owner
for item in 1 2 3 4 5 6 7 8; do
  owner=$(q -d proxy -c "SELECT harbor_proxy.partition_of($item)")
  q -d proxy -c "SELECT id FROM harbor_proxy.reserve_stock($item, 2, 'route-$item')" >/dev/null || fail=1
  where=$(for p in $(seq 0 $((NPART - 1))); do
            [ "$(q -d part$p -c "SELECT count(*) FROM harbor.stock_reservations WHERE order_id = 'route-$item'")" = 1 ] && echo -n "$p"
          done)
  check "item $item reserved on its partition $owner" "$owner" "$where"
done
check "stock_status through the proxy" "10|2|0|8" \
  "$(q -d proxy -c "SELECT on_hand, reserved, confirmed, available FROM harbor_proxy.stock_status(3)")"
out=$(q -d proxy -c "SELECT harbor_proxy.reserve_stock(1, 100, 'too-much')" 2>&1)
case "$out" in *"insufficient stock"*) echo "ok - insufficient stock reported through the proxy" ;;
  *) echo "not ok - expected insufficient stock: $out"; fail=1 ;; esac
check "the partition's SQLSTATE reaches the caller" "HB001" \
  "$(q -d proxy -c "DO \$\$ BEGIN PERFORM harbor_proxy.reserve_stock(1, 100, 'too-much');
     EXCEPTION WHEN OTHERS THEN RAISE NOTICE '%', SQLSTATE; END \$\$" 2>&1 | sed -n 's/.*NOTICE:  //p')"

# ---- order calls across partitions
q -d proxy -c "SELECT count(*) FROM harbor_proxy.reserve_many('multi-1', '[{\"item_id\": 10, \"qty\": 1}, {\"item_id\": 11, \"qty\": 1}, {\"item_id\": 12, \"qty\": 1}, {\"item_id\": 13, \"qty\": 1}]')" >/dev/null || fail=1
check "extend reaches every partition" "4" "$(q -d proxy -c "SELECT harbor_proxy.extend_reservation('multi-1', '20 minutes')")"
check "confirm reaches every partition" "4" "$(q -d proxy -c "SELECT harbor_proxy.confirm_reservation('multi-1')")"
check "confirm again returns 0" "0" "$(q -d proxy -c "SELECT harbor_proxy.confirm_reservation('multi-1')")"
out=$(q -d proxy -c "SELECT harbor_proxy.confirm_reservation('no-such-order')" 2>&1)
case "$out" in *"holds no stock to confirm"*) echo "ok - confirming an unknown order is refused" ;;
  *) echo "not ok - unknown order confirmed: $out"; fail=1 ;; esac
check "release of one item goes to its partition" "1" "$(q -d proxy -c "SELECT harbor_proxy.release_reservation('route-5', 5)")"
check "release of an order reaches every partition" "7" "$(
  q -d proxy -c "SELECT sum(harbor_proxy.release_reservation('route-' || i)) FROM generate_series(1, 8) i")"

# ---- cross-partition reserve_many: all or nothing
# two items on different partitions, the second one short
a=$(q -d proxy -c "SELECT min(g) FROM generate_series(20, $ITEMS) g WHERE harbor_proxy.partition_of(g) = 1")
b=$(q -d proxy -c "SELECT min(g) FROM generate_series(20, $ITEMS) g WHERE harbor_proxy.partition_of(g) = 2")
out=$(q -d proxy -c "SELECT * FROM harbor_proxy.reserve_many('tcc-1', '[{\"item_id\": $a, \"qty\": 3}, {\"item_id\": $b, \"qty\": 999}]')" 2>&1)
case "$out" in *"insufficient stock"*"partition 2"*) echo "ok - a refusal on partition 2 is reported" ;;
  *) echo "not ok - expected a refusal on partition 2: $out"; fail=1 ;; esac
check "nothing of the refused order is held on partition 1" "0" \
  "$(q -d part1 -c "SELECT count(*) FROM harbor.stock_reservations WHERE order_id = 'tcc-1' AND status = 'active'")"
check "partition 1 has its stock back" "$UNITS" "$(q -d part1 -c "SELECT stock_qty FROM variants WHERE id = $a")"
check "the order can be retried and succeeds" "2" \
  "$(q -d proxy -c "SELECT count(*) FROM harbor_proxy.reserve_many('tcc-1', '[{\"item_id\": $a, \"qty\": 3}, {\"item_id\": $b, \"qty\": 1}]')")"
check "a retry is idempotent" "2|4" \
  "$(q -d proxy -c "SELECT count(*), sum(qty) FROM harbor_proxy.reserve_many('tcc-1', '[{\"item_id\": $a, \"qty\": 3}, {\"item_id\": $b, \"qty\": 1}]')")"
check "release one item of a cross-partition order" "1" "$(q -d proxy -c "SELECT harbor_proxy.release_reservation('tcc-1', $b)")"
check "confirm skips the partition where the order holds nothing any more" "1" \
  "$(q -d proxy -c "SELECT harbor_proxy.confirm_reservation('tcc-1')")"
q -d part1 -c "UPDATE variants SET stock_qty = stock_qty + 3 WHERE id = $a" \
  -c "DELETE FROM harbor.stock_reservations WHERE order_id = 'tcc-1'" >/dev/null

# ---- a partition that cannot be reached mid reserve_many
c=$(q -d proxy -c "SELECT max(g) FROM generate_series(1, $ITEMS) g WHERE harbor_proxy.partition_of(g) = 3")
q -d postgres -c "ALTER DATABASE part3 ALLOW_CONNECTIONS false" \
  -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = 'part3'" >/dev/null
out=$(q -d proxy -c "SELECT * FROM harbor_proxy.reserve_many('down-1', '[{\"item_id\": $a, \"qty\": 2}, {\"item_id\": $c, \"qty\": 1}]')" 2>&1)
case "$out" in *"partition 3"*) echo "ok - an unreachable partition fails the call" ;;
  *) echo "not ok - expected a failure on partition 3: $out"; fail=1 ;; esac
check "the part taken on partition 1 was released" "0|$UNITS" \
  "$(q -d part1 -c "SELECT count(*) FILTER (WHERE status = 'active'), (SELECT stock_qty FROM variants WHERE id = $a)
                      FROM harbor.stock_reservations WHERE order_id = 'down-1'")"
q -d postgres -c "ALTER DATABASE part3 ALLOW_CONNECTIONS true" >/dev/null
check "the order succeeds once the partition is back" "2" \
  "$(q -d proxy -c "SELECT count(*) FROM harbor_proxy.reserve_many('down-1', '[{\"item_id\": $a, \"qty\": 2}, {\"item_id\": $c, \"qty\": 1}]')")"
q -d proxy -c "SELECT harbor_proxy.release_reservation('down-1')" >/dev/null

# ---- the proxy backend killed mid reserve_many: the part taken expires after its TTL
poll() {  # poll DB SQL EXPECTED: until the query returns EXPECTED, 30 s at most
  local deadline=$(( $(date +%s) + 30 ))
  while [ "$(q -d "$1" -c "$2")" != "$3" ]; do
    [ "$(date +%s)" -ge "$deadline" ] && return 1
    q -d postgres -c "SELECT pg_sleep(0.1)" >/dev/null
  done
}
psql -X -q -d part2 -c "BEGIN; SELECT 1 FROM variants WHERE id = $b FOR UPDATE; SELECT pg_sleep(60); COMMIT;" >/dev/null 2>&1 &
holder=$!
poll part2 "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()" 1 \
  || { echo "not ok - lock holder did not start"; fail=1; }
psql -X -q -d proxy -c "SELECT * FROM harbor_proxy.reserve_many('kill-1', '[{\"item_id\": $a, \"qty\": 2}, {\"item_id\": $b, \"qty\": 1}]', '3 seconds')" >/dev/null 2>&1 &
caller=$!
poll part1 "SELECT count(*) FROM harbor.stock_reservations WHERE order_id = 'kill-1' AND status = 'active'" 1 \
  && poll part2 "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'" 1 \
  || { echo "not ok - reserve_many did not reach partition 2"; fail=1; }
check "proxy backend killed mid-call" "1" \
  "$(q -d proxy -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE '%kill-1%' AND pid <> pg_backend_pid()")"
wait $caller
q -d part2 -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()" >/dev/null
wait $holder
check "the part on partition 1 outlived the call, expiring with its TTL" "t" \
  "$(q -d part1 -c "SELECT expires_at <= created_at + interval '3 seconds' FROM harbor.stock_reservations WHERE order_id = 'kill-1'")"
if poll proxy "SELECT harbor_proxy.sweep_expired() >= 0 AND NOT EXISTS (SELECT 1 FROM harbor_proxy._order_state_all('kill-1') s WHERE s.active > 0)" t; then
  echo "ok - after the TTL a sweep released what the killed call held"
else echo "not ok - holds of the killed call still active"; fail=1; fi
check "stock of the killed call's items is back" "$UNITS|$UNITS" \
  "$(q -d part1 -c "SELECT stock_qty FROM variants WHERE id = $a")|$(q -d part2 -c "SELECT stock_qty FROM variants WHERE id = $b")"
check "the killed order can be retried" "2" \
  "$(q -d proxy -c "SELECT count(*) FROM harbor_proxy.reserve_many('kill-1', '[{\"item_id\": $a, \"qty\": 2}, {\"item_id\": $b, \"qty\": 1}]')")"
q -d proxy -c "SELECT harbor_proxy.release_reservation('kill-1')" >/dev/null

# ---- concurrency through the proxy: never oversold, stock conserved
q -d proxy >/dev/null <<'SQL'
-- refusals are expected under load; pgbench would stop a client on an error
CREATE FUNCTION public.scale_try(kind int, item bigint, item2 bigint, ord int) RETURNS int
LANGUAGE plpgsql AS $$
BEGIN
  IF kind <= 5 THEN
    PERFORM harbor_proxy.reserve_stock(item, 1, 'o' || ord, '1 minute');
  ELSIF kind <= 7 THEN
    PERFORM harbor_proxy.reserve_many('m' || ord,
              jsonb_build_array(jsonb_build_object('item_id', item, 'qty', 1),
                                jsonb_build_object('item_id', item2, 'qty', 1)), '1 minute');
  ELSIF kind <= 8 THEN
    PERFORM harbor_proxy.release_reservation('o' || ord);
  ELSIF kind <= 9 THEN
    PERFORM harbor_proxy.release_reservation('m' || ord);
  ELSE
    PERFORM harbor_proxy.confirm_reservation('m' || ord);
  END IF;
  RETURN 1;
EXCEPTION WHEN SQLSTATE 'HB001' OR SQLSTATE 'HB003' THEN
  RETURN 0;
END $$;
SQL
cat > /tmp/scale_bench.$$.sql <<SQL
\set item random(1, $ITEMS)
\set item2 random(1, $ITEMS)
\set order random(1, 400)
\set action random(1, 10)
SELECT public.scale_try(:action, :item, :item2, :order);
SQL
pgbench -n -c 16 -j 2 -T 5 -f /tmp/scale_bench.$$.sql proxy > /tmp/scale_bench.$$.out 2>&1
grep -E "number of transactions actually processed" /tmp/scale_bench.$$.out
check "no client aborted under load" "0" "$(grep -c 'aborted\|ERROR' /tmp/scale_bench.$$.out)"
grep -E "aborted|ERROR" /tmp/scale_bench.$$.out | head -5
rm -f /tmp/scale_bench.$$.sql /tmp/scale_bench.$$.out
total=0
for p in $(seq 0 $((NPART - 1))); do
  check "partition $p: no negative stock" "0" "$(q -d part$p -c "SELECT count(*) FROM variants WHERE stock_qty < 0")"
  check "partition $p: stock + active + confirmed conserved per item" "" "$(q -d part$p -c "
    SELECT v.id FROM variants v LEFT JOIN harbor.stock_reservations r
        ON r.item_id = v.id AND r.status IN ('active', 'confirmed')
     GROUP BY v.id, v.stock_qty HAVING v.stock_qty + coalesce(sum(r.qty), 0) <> $UNITS")"
  check "partition $p: only its own items hold stock" "0" \
    "$(q -d part$p -c "SELECT count(*) FROM harbor.stock_reservations WHERE hashint8(item_id) & ($NPART - 1) <> $p")"
  total=$((total + $(q -d part$p -c "SELECT sum(stock_qty) FROM variants") \
                  + $(q -d part$p -c "SELECT coalesce(sum(qty), 0) FROM harbor.stock_reservations WHERE status IN ('active', 'confirmed')")))
done
check "total stock conserved over all partitions" "$((ITEMS * UNITS))" "$total"
check "check_stock empty on every partition" "" "$(q -d proxy -c "SELECT * FROM harbor_proxy.check_stock()")"
check "check_placement empty" "" "$(q -d proxy -c "SELECT * FROM harbor_proxy.check_placement()")"
check "sweep_expired through the proxy" "0" "$(q -d proxy -c "SELECT harbor_proxy.sweep_expired()")"

# ---- catalog reads on a streaming standby, RUN ON ANY
createdb catalog
q -d catalog >/dev/null <<'SQL'
CREATE EXTENSION harbor_orm;
CREATE TABLE brands (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE products (id bigint PRIMARY KEY, brand_id bigint REFERENCES brands, title text NOT NULL);
CREATE TABLE variants (id bigint PRIMARY KEY, product_id bigint NOT NULL REFERENCES products, sku text, stock_qty integer NOT NULL);
INSERT INTO brands VALUES (1, 'Harbor'), (2, 'Anchor');
INSERT INTO products SELECT g, 1 + g % 2, 'Product ' || g FROM generate_series(1, 20) g;
INSERT INTO variants SELECT g, 1 + g % 20, 'SKU-' || g, g % 7 FROM generate_series(1, 100) g;
SELECT harbor.reflect();
SQL
sb=$(mktemp -d /tmp/scale_standby.XXXXXX); chown postgres "$sb"; chmod 700 "$sb"
sbport=$(( ${PGPORT:-5432} + 17 ))
as_pg() { runuser -u postgres -- env PGPASSWORD="${PGPASSWORD:-}" "$@"; }
if as_pg pg_basebackup -h "${PGHOST:-localhost}" -p "${PGPORT:-5432}" -U "${PGUSER:-postgres}" -D "$sb/data" -R -X stream -c fast >/dev/null 2>&1; then
  printf "shared_preload_libraries = 'harbor_orm'\nmax_connections = 200\nport = %s\nlisten_addresses = ''\nunix_socket_directories = '%s'\n" "$sbport" "$sb" > "$sb/data/postgresql.conf"
  printf "local all all trust\n" > "$sb/data/pg_hba.conf"
  chown postgres "$sb/data/postgresql.conf" "$sb/data/pg_hba.conf"
  as_pg /usr/lib/postgresql/15/bin/pg_ctl -D "$sb/data" -l "$sb/log" -w start >/dev/null || { cat "$sb/log"; fail=1; }
  check "the standby is in recovery" "t" "$(psql -X -qAt -h "$sb" -p "$sbport" -U "${PGUSER:-postgres}" -d catalog -c 'SELECT pg_is_in_recovery()')"
  q -d proxy -c "SELECT harbor_proxy.set_catalog_replicas(ARRAY['host=$sb port=$sbport dbname=catalog'])" >/dev/null || fail=1
  calls=("load('variants', '{3,1,2}'::bigint[], '{product.brand}')" "get('products', 7::bigint, '{brand}')"
         "find('variants', '{\"stock_qty\": {\"lt\": 3}}', '{product}', order_by => '{stock_qty, id desc}', lim => 10)")
  for call in "${calls[@]}"; do
    direct=$(q -d catalog -c "SELECT harbor.$call")
    viaproxy=$(q -d proxy -c "SELECT harbor_proxy.$call")
    if [ -n "$direct" ] && [ "$direct" = "$viaproxy" ]; then echo "ok - the standby returns the same JSON as the primary: ${call%%(*}"
    else echo "not ok - ${call%%(*} on the standby differs: [$direct] [$viaproxy]"; fail=1; fi
  done
  # replay paused: the primary changes, reads through the proxy still see the standby's state
  sbq() { psql -X -qAt -h "$sb" -p "$sbport" -U "${PGUSER:-postgres}" -d catalog -c "$1"; }
  sbq "SELECT pg_wal_replay_pause()" >/dev/null
  q -d catalog -c "UPDATE products SET title = 'Renamed' WHERE id = 7" >/dev/null
  check "reads are served by the standby (replay paused: old title)" "Product 7" \
    "$(q -d proxy -c "SELECT harbor_proxy.get('products', 7::bigint)->>'title'")"
  sbq "SELECT pg_wal_replay_resume()" >/dev/null
  deadline=$(( $(date +%s) + 30 ))
  until [ "$(q -d proxy -c "SELECT harbor_proxy.get('products', 7::bigint)->>'title'")" = Renamed ]; do
    [ "$(date +%s)" -ge "$deadline" ] && { echo "not ok - the standby never caught up"; fail=1; break; }
    q -d postgres -c "SELECT pg_sleep(0.1)" >/dev/null
  done
  [ "$(date +%s)" -lt "$deadline" ] && echo "ok - after replay resumes the standby returns the new title"
  as_pg /usr/lib/postgresql/15/bin/pg_ctl -D "$sb/data" -m fast -w stop >/dev/null
else
  echo "not ok - pg_basebackup failed"; fail=1
fi
rm -rf "$sb"
exit $fail
INNER
