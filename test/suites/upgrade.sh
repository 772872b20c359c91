#!/usr/bin/env bash
# Upgrades: a database made under 0.1.0 and updated with ALTER EXTENSION is
# the same as a fresh install, and the data made under 0.1.0 keeps working.
#  - the extension's members (functions with signature, volatility, security,
#    SET clauses and grants; tables, indexes, constraints, config-dump
#    registration; views; event triggers) are compared between the two;
#  - registrations, stock, active/confirmed/expired holds and notify triggers
#    made under 0.1.0 still reserve, confirm, release, sweep and load.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh

in_cluster -- bash -s <<'INNER'
set -uo pipefail
. test/lib/tap.sh
q() { psql -X -qAt -v ON_ERROR_STOP=1 "$@"; }

# What makes up an installed harbor_orm, one line per fact, sorted.
describe_extension() {
  q -d "$1" <<'SQL'
SELECT 'version ' || extversion FROM pg_extension WHERE extname = 'harbor_orm';
SELECT 'function ' || p.oid::regprocedure || ' returns ' || pg_get_function_result(p.oid)
       || ' ' || p.provolatile::text || CASE WHEN p.prosecdef THEN ' definer' ELSE ' invoker' END
       || ' strict=' || p.proisstrict || ' config=' || coalesce(p.proconfig::text, '-')
       || ' acl=' || coalesce(p.proacl::text, '-') || ' src=' || p.prosrc
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'harbor';
SELECT 'relation ' || c.oid::regclass || ' ' || c.relkind::text || ' acl=' || coalesce(c.relacl::text, '-')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'harbor';
SELECT 'column ' || a.attrelid::regclass || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || ' notnull=' || a.attnotnull || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '-')
       || ' identity=' || a.attidentity::text
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE n.nspname = 'harbor' AND a.attnum > 0 AND NOT a.attisdropped;
SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'harbor'::regnamespace;
SELECT 'index ' || pg_get_indexdef(indexrelid)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = 'harbor'::regnamespace;
SELECT 'view ' || c.oid::regclass || ' ' || pg_get_viewdef(c.oid)
  FROM pg_class c WHERE c.relnamespace = 'harbor'::regnamespace AND c.relkind = 'v';
SELECT 'trigger ' || tgrelid::regclass || ' ' || pg_get_triggerdef(oid)
  FROM pg_trigger WHERE tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'harbor'::regnamespace)
   AND NOT tgisinternal;
SELECT 'event trigger ' || evtname || ' ' || evtevent || ' ' || evtfoid::regproc || ' '
       || coalesce(evttags::text, '-') || ' ' || evtenabled::text
  FROM pg_event_trigger;
SELECT 'config dump ' || unnest(extconfig)::regclass || ' '
       || coalesce(array_to_string(extcondition, ','), '')
  FROM pg_extension WHERE extname = 'harbor_orm';
SELECT 'member ' || pg_describe_object(classid, objid, objsubid)
  FROM pg_depend WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'harbor_orm');
SQL
}

fill_shop() {
  q -d "$1" <<'SQL'
CREATE TABLE brands (id int PRIMARY KEY, name text);
CREATE TABLE products (id int PRIMARY KEY, name text, brand_id int REFERENCES brands);
CREATE TABLE variants (id int PRIMARY KEY, product_id int REFERENCES products, stock_qty int NOT NULL CHECK (stock_qty >= 0));
INSERT INTO brands VALUES (1, 'Harbor');
INSERT INTO products VALUES (1, 'Mug', 1), (2, 'Tee', 1);
INSERT INTO variants SELECT g, 1 + g % 2, 10 FROM generate_series(1, 6) g;
SELECT harbor.reflect();
SELECT harbor.enable_stock('variants');
SELECT harbor.enable_change_notify('products');
SELECT harbor.reserve_stock(1, 2, 'o-active');
SELECT harbor.reserve_stock(2, 1, 'o-confirmed');
SELECT harbor.confirm_reservation('o-confirmed');
SELECT harbor.reserve_stock(3, 4, 'o-expiring', '1 millisecond');
SELECT harbor.reserve_stock(4, 1, 'o-released');
SELECT harbor.release_reservation('o-released');
SQL
}

createdb fresh
q -d fresh -c "CREATE EXTENSION harbor_orm" >/dev/null
createdb old
q -d old -c "CREATE EXTENSION harbor_orm VERSION '0.1.0'" >/dev/null
check "0.1.0 installs" "$(q -d old -c "SELECT extversion FROM pg_extension WHERE extname = 'harbor_orm'")" 0.1.0
fill_shop old >/dev/null
q -d old -c "ALTER EXTENSION harbor_orm UPDATE" >/dev/null
check "ALTER EXTENSION UPDATE reaches the default version" \
  "$(q -d old -c "SELECT extversion FROM pg_extension WHERE extname = 'harbor_orm'")" \
  "$(sed -n "s/^default_version = '\(.*\)'/\1/p" harbor_orm.control)"

diff <(describe_extension fresh | sort) <(describe_extension old | sort) > /tmp/harbor_upgrade.diff
check "an upgraded database has exactly the objects of a fresh install" "$(head -40 /tmp/harbor_upgrade.diff)" ""
check "the comparison saw the objects" \
  "$(describe_extension fresh | grep -c '^function harbor.reserve_stock(bigint' | sed "s/^1$/yes/")" yes

sleep_until_expired() {  # the 1 ms hold above
  q -d old -c "SELECT pg_sleep(0.01)" >/dev/null
}
sleep_until_expired
out=$(q -d old <<'SQL'
SELECT (harbor.reserve_stock(5, 3, 'o-new')).qty;
SELECT (harbor.reserve_stock(1, 3, 'o-active')).qty = 3;
SELECT harbor.confirm_reservation('o-active');
SELECT harbor.release_reservation('o-new');
SELECT harbor.sweep_expired();
SELECT count(*) FROM harbor.check_stock();
SELECT string_agg(order_id || ':' || status, ',' ORDER BY order_id, id) FROM harbor.stock_reservations;
SELECT sum(stock_qty) + (SELECT sum(qty) FROM harbor.stock_reservations WHERE status IN ('active', 'confirmed')) FROM variants;
SELECT harbor.get('products', 1, '{brand,variants}')->'brand'->>'name';
SQL
)
check "holds made under 0.1.0 keep working after the update" \
  "$out" \
  "$(printf '3\nt\n1\n1\n1\n0\no-active:confirmed,o-confirmed:confirmed,o-expiring:expired,o-new:released,o-released:released\n60\nHarbor')"

finish
INNER
