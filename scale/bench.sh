#!/usr/bin/env bash
# Cost of routing reservations through PL/Proxy (scale/harbor_proxy.sql), in
# one throwaway cluster on this machine:
#   direct   harbor.reserve_stock on a database holding every item
#   proxy-1  harbor_proxy.reserve_stock, one partition (that same database)
#   proxy-4  harbor_proxy.reserve_stock, four partition databases
# and the latency of harbor_proxy.reserve_many with two lines on one
# partition against two lines on two partitions.
#   bash scale/bench.sh          (DURATION=8 CLIENTS=8 by default)
# Builds and installs under the test lock, like the test command.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/prepare.sh
harbor_prepare >/dev/null || { echo "build failed"; exit 1; }
. test/lib/cluster.sh
export DURATION=${DURATION:-8} CLIENTS=${CLIENTS:-8}

in_cluster -o max_connections=200 -o synchronous_commit=off -- bash -s <<'INNER'
set -uo pipefail
q() { psql -X -qAt -v ON_ERROR_STOP=1 "$@"; }
ITEMS=10000
mkpart() {  # mkpart DB PART NPART
  createdb "$1"
  q -d "$1" >/dev/null <<SQL
CREATE EXTENSION harbor_orm;
CREATE TABLE variants (id bigint PRIMARY KEY, stock_qty integer NOT NULL CHECK (stock_qty >= 0));
SELECT harbor.register_model('variants');
SELECT harbor.enable_stock('variants', 'stock_qty');
INSERT INTO variants SELECT g, 100000000 FROM generate_series(1, $ITEMS) g WHERE hashint8(g) & ($3 - 1) = $2;
VACUUM ANALYZE variants;
SQL
}
conn() { echo "'host=${PGHOST:-localhost} port=${PGPORT:-5432} dbname=$1 password=${PGPASSWORD:-}'"; }
mkpart single 0 1
for p in 0 1 2 3; do mkpart "part$p" $p 4; done
createdb proxy1; createdb proxy4
q -d proxy1 -f scale/harbor_proxy.sql >/dev/null
q -d proxy4 -f scale/harbor_proxy.sql >/dev/null
q -d proxy1 -c "SELECT harbor_proxy.set_partitions(ARRAY[$(conn single)])" >/dev/null
q -d proxy4 -c "SELECT harbor_proxy.set_partitions(ARRAY[$(conn part0), $(conn part1), $(conn part2), $(conn part3)])" >/dev/null

run() {  # run LABEL DB SCHEMA CLIENTS SCRIPT
  printf '%s\n' "$5" > /tmp/scale_bench_$$.sql
  local out
  out=$(pgbench -n -M prepared -c "$4" -j 2 -T "$DURATION" -f /tmp/scale_bench_$$.sql "$2" 2>&1)
  printf '%-34s %10s tps  %8s ms\n' "$1" \
    "$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p')" \
    "$(echo "$out" | sed -n 's/^latency average = \([0-9.]*\).*/\1/p')"
  echo "$out" | grep -E "aborted|ERROR" | head -3
}
R='\set item random(1, 10000)
\set ord random(1, 1000000000)
SELECT id FROM SCHEMA.reserve_stock(:item, 1, :ord::text);'
echo "reserve_stock, $CLIENTS clients, ${DURATION}s, synchronous_commit=off"
for round in 1 2; do
  run "direct (harbor.)"          single harbor       "$CLIENTS" "${R/SCHEMA/harbor}"
  run "proxy, 1 partition"        proxy1 harbor_proxy "$CLIENTS" "${R/SCHEMA/harbor_proxy}"
  run "proxy, 4 partitions"       proxy4 harbor_proxy "$CLIENTS" "${R/SCHEMA/harbor_proxy}"
done
echo "reserve_stock, 1 client (latency per call)"
run "direct (harbor.)"          single harbor       1 "${R/SCHEMA/harbor}"
run "proxy, 1 partition"        proxy1 harbor_proxy 1 "${R/SCHEMA/harbor_proxy}"
run "proxy, 4 partitions"       proxy4 harbor_proxy 1 "${R/SCHEMA/harbor_proxy}"

# reserve_many: two lines on one partition against two on two partitions
same=$(q -d proxy4 -c "SELECT string_agg(g::text, ',') FROM (SELECT g FROM generate_series(1, 100) g WHERE harbor_proxy.partition_of(g) = 0 LIMIT 2) s")
cross=$(q -d proxy4 -c "SELECT string_agg(g::text, ',') FROM (SELECT DISTINCT ON (harbor_proxy.partition_of(g)) g FROM generate_series(1, 100) g WHERE harbor_proxy.partition_of(g) IN (0, 1)) s")
M='\set ord random(1, 1000000000)
SELECT count(*) FROM harbor_proxy.reserve_many(:ord::text, jsonb_build_array(jsonb_build_object('"'"'item_id'"'"', A, '"'"'qty'"'"', 1), jsonb_build_object('"'"'item_id'"'"', B, '"'"'qty'"'"', 1)));'
mk() { local s="${M/A/${1%,*}}"; echo "${s/B/${1#*,}}"; }
echo "reserve_many, 2 lines, 1 client"
run "direct harbor.reserve_many"        single harbor 1 "$(mk "$same" | sed 's/harbor_proxy/harbor/')"
run "proxy, lines on 1 partition"       proxy4 harbor_proxy 1 "$(mk "$same")"
run "proxy, lines on 2 partitions"      proxy4 harbor_proxy 1 "$(mk "$cross")"
rm -f /tmp/scale_bench_$$.sql
INNER
