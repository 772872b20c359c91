#!/usr/bin/env bash
# Benchmark: harbor.reserve_stock against the seed's client-side pattern
# (SELECT ... FOR UPDATE, UPDATE, INSERT, COMMIT as separate statements),
# the same logic as a PL/pgSQL function, and a single-statement CTE.
# One hot item and 10,000 items; synchronous_commit off and on; 16 clients;
# a cluster with fsync=on.  Each run starts from the same data with enough
# stock that nothing runs out, and lasts DURATION seconds (default 12).
#
#   bash bench/reserve.sh                 build, install, run, print the table
#   DURATION=20 CLIENTS=16 bash bench/reserve.sh
#   SCOPES=hot SYNCS=off VARIANTS="cte harbor" bash bench/reserve.sh   a subset
#
# Raw pgbench output goes to bench/results/reserve-<timestamp>/.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" != inside ]; then
  . scripts/prepare.sh
  harbor_prepare
  RESULTS="$PWD/bench/results/reserve-$(date -u +%Y%m%dT%H%M%SZ)"
  export RESULTS
  mkdir -p "$RESULTS"
  exec pg_virtualenv -t -v 15 -o shared_preload_libraries=harbor_orm -o fsync=on \
    -o max_connections=64 -o shared_buffers=256MB -o max_wal_size=4GB \
    bash "$0" inside
fi

DURATION=${DURATION:-12}
CLIENTS=${CLIENTS:-16}
JOBS=${JOBS:-2}
export PGDATABASE=bench
createdb bench
psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION harbor_orm;
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL,
                    stock_qty int NOT NULL CHECK (stock_qty >= 0));
INSERT INTO items SELECT g, 'item ' || g, 1000000000 FROM generate_series(1, 10000) g;
-- a table that references the items, as order lines would
CREATE TABLE order_lines (id bigserial PRIMARY KEY, item_id int REFERENCES items (id));
SELECT harbor.register_model('items');
SELECT harbor.enable_stock('items');

-- The seed's logic as a PL/pgSQL function, with the same fixed search_path
-- as harbor's functions.
CREATE FUNCTION reserve_plpgsql(p_item bigint, p_qty int, p_order text)
    RETURNS bigint LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    stock int;
    hold_id bigint;
BEGIN
    SELECT stock_qty INTO stock FROM public.items WHERE id = p_item FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown item %', p_item;
    END IF;
    IF stock < p_qty THEN
        RAISE EXCEPTION 'insufficient stock';
    END IF;
    UPDATE public.items SET stock_qty = stock_qty - p_qty WHERE id = p_item;
    INSERT INTO harbor.stock_reservations (model, item_id, order_id, qty, expires_at)
    VALUES ('items', p_item, p_order, p_qty, now() + interval '15 minutes')
    RETURNING id INTO hold_id;
    RETURN hold_id;
END $$;
SQL

w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
order='\set o random(1, 9000000000000000000)'
for scope in hot spread; do
  if [ $scope = hot ]; then pick='\set id 1'; else pick='\set id random(1, 10000)'; fi
  printf '%s\n' "$pick" "$order" \
    "SELECT id FROM harbor.reserve_stock(:id, 1, 'b' || :o, '15 minutes', 'items');" \
    >"$w/harbor-$scope.sql"
  printf '%s\n' "$pick" "$order" \
    "BEGIN;" \
    "SELECT stock_qty FROM items WHERE id = :id FOR UPDATE \\gset" \
    "\\if :stock_qty >= 1" \
    "UPDATE items SET stock_qty = stock_qty - 1 WHERE id = :id;" \
    "INSERT INTO harbor.stock_reservations (model, item_id, order_id, qty, expires_at) VALUES ('items', :id, 'b' || :o, 1, now() + interval '15 minutes');" \
    "\\endif" \
    "COMMIT;" \
    >"$w/client-$scope.sql"
  printf '%s\n' "$pick" "$order" \
    "SELECT reserve_plpgsql(:id, 1, 'b' || :o);" \
    >"$w/plpgsql-$scope.sql"
  printf '%s\n' "$pick" "$order" \
    "WITH upd AS (UPDATE items SET stock_qty = stock_qty - 1 WHERE id = :id AND stock_qty >= 1 RETURNING id) INSERT INTO harbor.stock_reservations (model, item_id, order_id, qty, expires_at) SELECT 'items', id, 'b' || :o, 1, now() + interval '15 minutes' FROM upd RETURNING id;" \
    >"$w/cte-$scope.sql"
done

reset_data() {
  psql -X -q -c "TRUNCATE harbor.stock_reservations" \
       -c "UPDATE items SET stock_qty = 1000000000" \
       -c "VACUUM ANALYZE items" -c "VACUUM ANALYZE harbor.stock_reservations" -c "CHECKPOINT"
}

variants=(${VARIANTS:-client plpgsql cte harbor})
scopes=(${SCOPES:-hot spread})
syncs=(${SYNCS:-off on})
declare -A tps
for scope in "${scopes[@]}"; do
  for sc in "${syncs[@]}"; do
    for v in "${variants[@]}"; do
      reset_data
      f="$RESULTS/$scope-$sc-$v.txt"
      PGOPTIONS="-c synchronous_commit=$sc" pgbench -n -M prepared -c "$CLIENTS" -j "$JOBS" \
        -T "$DURATION" -f "$w/$v-$scope.sql" >"$f" 2>&1 || true
      t=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$f")
      failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$f")
      tps[$scope-$sc-$v]=${t:-0}
      echo "  $scope, synchronous_commit=$sc, $v: ${t:-error} tps (failed: ${failed:-?})"
    done
  done
done

{
  echo
  echo "reserve 1 unit: $CLIENTS clients, ${DURATION}s per run, fsync=on, pgbench -M prepared, TPS"
  printf '%-9s %-5s %8s %8s %8s %8s %9s %9s %9s\n' items sync harbor client plpgsql cte "h/client" "h/plpgsql" "h/cte"
  for scope in "${scopes[@]}"; do
    for sc in "${syncs[@]}"; do
      h=${tps[$scope-$sc-harbor]:-0}; c=${tps[$scope-$sc-client]:-0}
      p=${tps[$scope-$sc-plpgsql]:-0}; e=${tps[$scope-$sc-cte]:-0}
      if [ $scope = hot ]; then label="1 hot"; else label="10,000"; fi
      printf '%-9s %-5s %8.0f %8.0f %8.0f %8.0f %8.2fx %8.2fx %8.2fx\n' "$label" "$sc" "$h" "$c" "$p" "$e" \
        "$(echo "$h / ($c + 0.001)" | bc -l)" "$(echo "$h / ($p + 0.001)" | bc -l)" \
        "$(echo "$h / ($e + 0.001)" | bc -l)"
    done
  done
} | tee "$RESULTS/summary.txt"
