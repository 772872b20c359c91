# Reservation workloads (sourced by bench/run.sh and bench/reserve.sh).
#
# Data: items(id int, name, stock_qty) with 10,000 rows and stock that never
# runs out; sitems, the same, whose item 1 is split over max(16, clients)
# buckets when harbor.split_stock exists (a bucket per concurrent checkout
# at most, as docs/reservations.md advises).  Strategies, each reserving 1 unit for a new
# order id per transaction:
#   client   the seed's client-side pattern: BEGIN; SELECT ... FOR UPDATE;
#            UPDATE; INSERT; COMMIT as separate statements
#   plpgsql  the same logic as a PL/pgSQL function
#   cte      a single-statement CTE (guarded UPDATE + INSERT)
#   harbor   harbor.reserve_stock
#   many3    harbor.reserve_many with 3 lines (the item and two random others)
#   split  harbor.reserve_stock on the split item (hot scope only)
# Every function is called with the same shape: SELECT f(...).

reserve_setup() {
  psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS harbor_orm;
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL,
                    stock_qty int NOT NULL CHECK (stock_qty >= 0));
INSERT INTO items SELECT g, 'item ' || g, 1000000000 FROM generate_series(1, 10000) g;
-- a table that references the items, as order lines would
CREATE TABLE order_lines (id bigserial PRIMARY KEY, item_id int REFERENCES items (id));
SELECT harbor.register_model('items');
SELECT harbor.enable_stock('items');
CREATE TABLE sitems (LIKE items INCLUDING ALL);
INSERT INTO sitems SELECT * FROM items;
SELECT harbor.register_model('sitems');
SELECT harbor.enable_stock('sitems');

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
  if reserve_has_split; then
    psql -X -q -v ON_ERROR_STOP=1 -c "SELECT harbor.split_stock('sitems', 1, 16)" >/dev/null
  fi
}

reserve_has_split() { has_function 'harbor.split_stock(text,bigint,integer)'; }
reserve_has_bucket_counters() { has_function 'harbor.stock_bucket_counters()'; }

# reserve_scripts DIR: the pgbench scripts DIR/<strategy>-<scope>.sql
reserve_scripts() {
  local w=$1 scope pick
  local order='\set o random(1, 9000000000000000000)'
  for scope in hot spread; do
    if [ $scope = hot ]; then pick='\set id 1'; else pick='\set id random(1, 10000)'; fi
    printf '%s\n' "$pick" "$order" \
      "SELECT harbor.reserve_stock(:id, 1, 'b' || :o, '15 minutes', 'items');" \
      >"$w/harbor-$scope.sql"
    printf '%s\n' "$pick" "$order" '\set i2 random(2, 10000)' '\set i3 random(2, 10000)' \
      "SELECT harbor.reserve_many('b' || :o, jsonb_build_array(jsonb_build_object('item_id', :id::bigint, 'qty', 1), jsonb_build_object('item_id', :i2::bigint, 'qty', 1), jsonb_build_object('item_id', :i3::bigint, 'qty', 1)), '15 minutes', 'items');" \
      >"$w/many3-$scope.sql"
    printf '%s\n' "$pick" "$order" \
      "SELECT harbor.reserve_stock(:id, 1, 'b' || :o, '15 minutes', 'sitems');" \
      >"$w/split-$scope.sql"
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
}

# reserve_reset [CLIENTS]: fresh holds table and stock before each group of
# runs; the split item gets max(16, CLIENTS) buckets.
reserve_reset() {
  local buckets=$(( ${1:-16} > 16 ? ${1:-16} : 16 ))
  psql -X -q -c "TRUNCATE harbor.stock_reservations" \
       -c "UPDATE items SET stock_qty = 1000000000" \
       -c "VACUUM ANALYZE items" -c "VACUUM ANALYZE harbor.stock_reservations" >/dev/null
  if reserve_has_split; then
    psql -X -q -c "SELECT harbor.split_stock('sitems', 1, $buckets)" >/dev/null
  fi
}

# reserve_workloads SCRIPTDIR: every combination of RES_SCOPES (hot spread),
# RES_SYNCS (on off), RES_NETS (direct proxy), RES_CLIENTS (1 16 64) over
# RES_VARIANTS (client plpgsql cte harbor many3, plus split on the hot
# item when harbor.split_stock exists), RES_SECONDS per run.
reserve_workloads() {
  local w=$1 scope sc net c port v
  local variants split=""
  reserve_has_split && split=split
  for scope in ${RES_SCOPES:-hot spread}; do
    local warm=${WARMUP:-1}   # once per scope: every run opens new connections anyway
    for net in ${RES_NETS:-direct proxy}; do
      if [ "$net" = proxy ]; then port=$PROXY_PORT; else port=$PGPORT; fi
      for sc in ${RES_SYNCS:-on off}; do
        for c in ${RES_CLIENTS:-1 16 64}; do
          local args=()
          for v in ${RES_VARIANTS:-client plpgsql cte harbor many3} $([ $scope = hot ] && echo $split); do
            args+=("$v=$w/$v-$scope.sql")
          done
          reserve_reset "$c"
          WARMUP=$warm PGOPTIONS="-c synchronous_commit=$sc" run_group "reserve_${scope}_flush-$sc" "$net" "$c" "$port" \
            "${RES_SECONDS:-2}" "${args[@]}"
          warm=0
        done
      done
    done
  done
}
