#!/usr/bin/env bash
# pg_dump -Fc / pg_restore of a database with harbor_orm in use, into fresh
# databases of the same cluster (harbor_orm preloaded, fast sweeper):
#  - a shop with registered models, a declared relationship, two stock
#    models (stock in a table of its own, variants of products; and stock
#    in the catalogue table itself, under another column name), change
#    notification, and holds written by an application role: confirmed,
#    released, expired, active for an hour and active for a few seconds;
#  - after restore: models, relationships, stock and holds are equal,
#    check_stock() is empty, reserve/confirm/release work, notify triggers
#    fire, and the background sweeper sweeps the holds that expired;
#  - created_by: a plain restore runs the holds' stamping trigger, so the
#    restored holds record the restoring role; a restore by sections with
#    the data restored --disable-triggers (superuser) keeps the roles of the
#    dump.  Both are checked.
#  - stock buckets: a split item (gadget 1, four buckets) with a long hold
#    and a hold expiring in seconds on it; after restore the buckets and the
#    holds' buckets are equal, reserve/release work on it, the sweeper gives
#    the expired hold back to its bucket, stock column + buckets + holds is
#    conserved and check_stock() is empty.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh

in_cluster -o harbor_orm.sweep_interval=1s -o harbor_orm.sweeper_databases=postgres -- bash -s <<'INNER'
set -uo pipefail
tests=0
failures=0
check() {  # check NAME EXPECTED ACTUAL
  tests=$((tests + 1))
  if [ "$2" = "$3" ]; then echo "ok $tests - $1"
  else echo "not ok $tests - $1"; printf '#   expected: %s\n#   got:      %s\n' "$2" "$3"; failures=$((failures + 1)); fi
}
q() { local db=$1; shift; psql -X -qAt -v ON_ERROR_STOP=1 -d "$db" "$@" 2>&1; }
# wait_for NAME SECONDS DB SQL EXPECTED: polls until SQL gives EXPECTED.
wait_for() {
  local deadline=$(( $(date +%s) + $2 )) got
  while :; do
    got=$(q "$3" -c "$4")
    if [ "$got" = "$5" ] || [ "$(date +%s)" -ge "$deadline" ]; then break; fi
    sleep 0.2
  done
  check "$1" "$5" "$got"
}

# The state to compare, one fact a line.
state() {
  q "$1" <<'SQL'
SELECT 'model ' || m::text FROM harbor.models m ORDER BY 1;
SELECT 'relationship ' || r::text FROM harbor.relationships r ORDER BY 1;
SELECT 'stock model ' || s::text FROM harbor.stock_model s ORDER BY 1;
SELECT 'notify ' || model || ' ' || channel FROM harbor.change_notify_models ORDER BY 1;
SELECT format('hold %s %s %s %s %s %s %s created=%s expires=%s closed=%s', id, model, item_id, order_id, qty,
              status, created_by, created_at, expires_at, closed_at)
  FROM harbor.stock_reservations ORDER BY id;
SELECT 'variant ' || id || ' ' || stock_qty FROM variants ORDER BY id;
SELECT 'gadget ' || id || ' ' || on_hand FROM gadgets ORDER BY id;
SELECT 'bucket ' || b::text FROM harbor.stock_buckets b ORDER BY 1;
SELECT 'hold bucket ' || order_id || ' ' || item_id || ' ' || COALESCE(bucket::text, '-')
  FROM harbor.stock_reservations ORDER BY id;
SELECT 'sequence ' || last_value || ' ' || is_called FROM harbor.stock_reservations_id_seq;
SQL
}

createuser shop_app
createdb shop
q shop <<'SQL' >/dev/null
SET client_min_messages = warning;
CREATE EXTENSION harbor_orm;
CREATE TABLE brands (id int PRIMARY KEY, name text);
CREATE TABLE products (id int PRIMARY KEY, name text, brand_id int REFERENCES brands);
CREATE TABLE variants (id int PRIMARY KEY, product_id int REFERENCES products,
                       stock_qty int NOT NULL CHECK (stock_qty >= 0));
CREATE TABLE gadgets (id int PRIMARY KEY, name text, on_hand int NOT NULL CHECK (on_hand >= 0));
INSERT INTO brands VALUES (1, 'Harbor');
INSERT INTO products VALUES (1, 'Mug', 1), (2, 'Tee', 1);
INSERT INTO variants SELECT g, 1 + g % 2, 10 FROM generate_series(1, 6) g;
INSERT INTO gadgets SELECT g, 'gadget ' || g, 20 FROM generate_series(1, 3) g;
SELECT harbor.register_model('brands');
SELECT harbor.register_model('products');
SELECT harbor.register_model('variants');
SELECT harbor.register_model('gadgets');
SELECT harbor.register_relationship('products', 'brand', 'brands', '{brand_id}');
SELECT harbor.register_relationship('products', 'variants', 'variants', '{product_id}');
SELECT harbor.enable_stock('variants');
SELECT harbor.enable_stock('gadgets', 'on_hand');
SELECT harbor.enable_change_notify('products');
GRANT SELECT, UPDATE ON variants, gadgets TO shop_app;
GRANT SELECT, INSERT, UPDATE ON harbor.stock_reservations TO shop_app;
SET ROLE shop_app;
SELECT harbor.reserve_stock(1, 2, 'o-active', interval '1 hour', 'variants');
SELECT harbor.reserve_stock(2, 1, 'o-confirmed', model => 'variants');
SELECT harbor.confirm_reservation('o-confirmed');
SELECT harbor.reserve_stock(3, 1, 'o-released', model => 'variants');
SELECT harbor.release_reservation('o-released');
SELECT harbor.reserve_stock(4, 3, 'o-expired', interval '1 millisecond', 'variants');
SELECT pg_sleep(0.01);
RESET ROLE;
SELECT harbor.sweep_expired();
SET ROLE shop_app;
SELECT harbor.reserve_stock(5, 2, 'o-soon', interval '6 seconds', 'variants');
SELECT harbor.reserve_many('o-soon-many', '[{"item_id": 1, "qty": 1}, {"item_id": 6, "qty": 4}]', interval '6 seconds', 'variants');
SELECT harbor.reserve_stock(2, 5, 'o-gadget', interval '6 seconds', 'gadgets');
SELECT harbor.reserve_stock(3, 1, 'o-gadget-long', interval '1 hour', 'gadgets');
-- a split item with a long hold and one expiring in seconds
SELECT harbor.split_stock('gadgets', 1, 4);
SELECT harbor.reserve_stock(1, 3, 'b-long', interval '1 hour', 'gadgets');
SELECT harbor.reserve_stock(1, 2, 'b-soon', interval '6 seconds', 'gadgets');
SQL
check "the source shop is set up" "" "$(q shop -c "SELECT * FROM harbor.check_stock()")"
check "the holds in the source record their last writer: the application role, the sweeping superuser" \
  "o-expired:postgres,others:shop_app" \
  "$(q shop -c "SELECT string_agg(DISTINCT CASE WHEN order_id = 'o-expired' THEN order_id ELSE 'others' END
                                  || ':' || created_by::text, ',') FROM harbor.stock_reservations")"
before=$(state shop)
check "the source has 8 active holds, 5 of them expiring in seconds" "8" \
  "$(q shop -c "SELECT count(*) FROM harbor.stock_reservations WHERE status = 'active'")"

dump=$(mktemp /tmp/harbor_dump.XXXXXX)
trap 'rm -f "$dump"' EXIT
pg_dump -Fc -d shop -f "$dump"
check "pg_dump -Fc succeeds" "0" "$?"

createdb restored
errs=$(pg_restore -d restored "$dump" 2>&1)
check "pg_restore reports no error" "" "$errs"
createdb restored_keep
# --disable-triggers acts only in a data-only restore: schema, then the
# data with triggers disabled (superuser), then indexes and constraints.
errs=$(pg_restore --section=pre-data -d restored_keep "$dump" 2>&1
       pg_restore --section=data --disable-triggers -d restored_keep "$dump" 2>&1
       pg_restore --section=post-data -d restored_keep "$dump" 2>&1)
check "pg_restore by sections, data with --disable-triggers, reports no error" "" "$errs"

# The dump was taken within the holds' 6 seconds; sweep nothing before
# comparing (the sweeper serves only postgres so far).
check "a plain restore: everything but created_by is equal" \
  "$(sed -E 's/ (shop_app|postgres) created=/ ROLE created=/' <<<"$before")" \
  "$(state restored | sed 's/ postgres created=/ ROLE created=/')"
check "a plain restore: the holds record the restoring role" "postgres" \
  "$(q restored -c "SELECT string_agg(DISTINCT created_by::text, ',') FROM harbor.stock_reservations")"
check "data restored with --disable-triggers: everything is equal, created_by included" "$before" "$(state restored_keep)"

for db in restored restored_keep; do
  check "$db: check_stock() is empty" "" "$(q $db -c "SELECT * FROM harbor.check_stock()")"
  check "$db: registry in step with the catalog" "" "$(q $db -c "SELECT * FROM harbor.check_models()")"
  check "$db: load() follows the restored relationships" "Harbor|3" \
    "$(q $db -c "SELECT harbor.get('products', 1, '{brand,variants}')->'brand'->>'name',
                         jsonb_array_length(harbor.get('products', 1, '{brand,variants}')->'variants')")"
  out=$(q $db <<'SQL'
SELECT (harbor.reserve_stock(4, 2, 'o-new', interval '1 hour', 'variants')).qty;
SELECT harbor.confirm_reservation('o-new');
SELECT harbor.release_reservation('o-active');
SELECT (harbor.reserve_stock(1, 1, 'o-gadget-new', interval '1 hour', 'gadgets')).qty;
SELECT harbor.release_reservation('o-gadget-new');
SQL
)
  check "$db: reserve, confirm and release work" "$(printf '2\n1\n1\n1\n1')" "$out"
  check "$db: the split item has its four buckets and its holds' buckets" "4|2" \
    "$(q $db -c "SELECT (SELECT count(*) FROM harbor.stock_buckets WHERE item_id = 1),
                        (SELECT count(*) FROM harbor.stock_reservations WHERE order_id LIKE 'b-%' AND bucket IS NOT NULL)")"
  out=$(q $db <<'SQL'
SELECT (harbor.reserve_stock(1, 4, 'b-new', interval '1 hour', 'gadgets')).bucket IS NOT NULL;
SELECT harbor.release_reservation('b-new');
SQL
)
  check "$db: reserve and release work on the split item" "$(printf 't\n1')" "$out"
  listen=$(q $db -c "LISTEN harbor_changes" -c "UPDATE products SET name = 'Big mug' WHERE id = 1" -c "SELECT 1")
  check "$db: the restored notify trigger fires" "1" "$(grep -c 'harbor_changes' <<<"$listen")"
done

# The background sweeper, once it serves the restored databases, sweeps the
# holds that expired there (4 in each: 2 variants of o-soon-many, o-soon,
# o-gadget) and gives their stock back.
q postgres -c "ALTER SYSTEM SET harbor_orm.sweeper_databases = 'postgres, restored, restored_keep'" \
  -c "SELECT pg_reload_conf()" >/dev/null
for db in restored restored_keep; do
  wait_for "$db: the sweeper expires the holds that ran out" 30 $db \
    "SELECT string_agg(order_id || ':' || item_id || ':' || status, ',' ORDER BY id)
       FROM harbor.stock_reservations WHERE order_id LIKE 'o-soon%' OR order_id = 'o-gadget'" \
    "o-soon:5:expired,o-soon-many:1:expired,o-soon-many:6:expired,o-gadget:2:expired"
  check "$db: the stock is back and the long hold kept" \
    "1=10,2=9,3=10,4=8,5=10,6=10|1=0,2=20,3=19" \
    "$(q $db -c "SELECT (SELECT string_agg(id || '=' || stock_qty, ',' ORDER BY id) FROM variants),
                        (SELECT string_agg(id || '=' || on_hand, ',' ORDER BY id) FROM gadgets)")"
  wait_for "$db: the sweeper expires the hold on the split item" 30 $db \
    "SELECT status FROM harbor.stock_reservations WHERE order_id = 'b-soon'" "expired"
  check "$db: the split item's stock is back in its buckets, the long hold kept" "0|17|3" \
    "$(q $db -c "SELECT (SELECT on_hand FROM gadgets WHERE id = 1),
                        (SELECT sum(stock) FROM harbor.stock_buckets WHERE item_id = 1 AND model = 'gadgets'),
                        (SELECT sum(qty) FROM harbor.stock_reservations WHERE model = 'gadgets' AND item_id = 1 AND status = 'active')")"
  check "$db: check_stock() is empty after the sweeps" "" "$(q $db -c "SELECT * FROM harbor.check_stock()")"
done
check "the source database was not swept (not served)" "8" \
  "$(q shop -c "SELECT count(*) FROM harbor.stock_reservations WHERE status = 'active'")"

echo "1..$tests"
if [ "$failures" -gt 0 ]; then
  echo "# $failures of $tests failed; server log:"
  cat "$(dirname "$PG_CLUSTER_CONF_ROOT")"/log/*.log | tail -40 | sed 's/^/#   /'
  exit 1
fi
echo "dump_restore: all checks passed"
INNER
