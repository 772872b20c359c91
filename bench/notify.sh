#!/usr/bin/env bash
# What change notifications cost on the write path.
#
#   bash bench/notify.sh          build, install, run in a throwaway cluster
#
# 10,000 items (bigint key, integer stock).  pgbench -M prepared, 8 clients,
# BENCH_SECONDS (default 10) per run, random item per transaction:
#   update:  UPDATE items SET stock_qty = stock_qty WHERE id = :id
#            (a) no trigger
#            (b) harbor.enable_change_notify (C statement trigger), with
#                payload => 'keys' (the ids, as the PL/pgSQL version below)
#                and with the default payload => 'count'
#            (c) the same payload from PL/pgSQL statement triggers over the
#                transition tables (json_agg + pg_notify), the obvious
#                hand-written alternative
#            and, to see where the cost goes: (d) an empty PL/pgSQL
#            statement trigger with a transition table, (e) no trigger but
#            the same payload from pg_notify() in the UPDATE statement
#   reserve: harbor.reserve_stock then harbor.release_reservation
#            (two transactions), notifications off and on
# Raw pgbench output goes to bench/results/notify_*.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/lib/common.sh
if [ "${1:-}" != "--inside" ]; then
  bench_cluster "$0" --inside -- -o max_connections=50
fi

bench_database harbor_bench

psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION harbor_orm;
CREATE TABLE items (id bigint PRIMARY KEY, stock_qty integer NOT NULL CHECK (stock_qty >= 0));
INSERT INTO items SELECT g, 1000000 FROM generate_series(1, 10000) g;
SELECT harbor.register_model('items');
VACUUM ANALYZE items;
CREATE FUNCTION plpgsql_empty() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE FUNCTION plpgsql_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE ids jsonb;
BEGIN
  IF TG_OP = 'DELETE' THEN
    SELECT jsonb_agg(o.id) INTO ids FROM harbor_old o;
  ELSE
    SELECT jsonb_agg(n.id) INTO ids FROM harbor_new n;
  END IF;
  IF ids IS NOT NULL THEN
    PERFORM pg_notify('harbor_changes',
      jsonb_build_object('model', TG_ARGV[0], 'op', lower(TG_OP), 'ids', ids)::text);
  END IF;
  RETURN NULL;
END $$;
SQL

echo '\set id random(1, 10000)
UPDATE items SET stock_qty = stock_qty WHERE id = :id;' > "$W/update.sql"
echo '\set id random(1, 10000)
WITH u AS (UPDATE items SET stock_qty = stock_qty WHERE id = :id RETURNING id)
SELECT pg_notify('"'"'harbor_changes'"'"', '"'"'{"model": "items", "op": "update", "ids": ['"'"' || id || '"'"']}'"'"') FROM u;' > "$W/update_notify.sql"
echo '\set id random(1, 10000)
SELECT harbor.reserve_stock(:id, 1, :client_id || '"'"'-'"'"' || :id);
SELECT harbor.release_reservation(:client_id || '"'"'-'"'"' || :id);' > "$W/reserve.sql"

tps() {
  local name=$1 script=$2
  psql -X -q -c 'CHECKPOINT' >/dev/null
  "$PGBENCH" -n -M prepared -c 8 -j 2 -T "$SECS" -f "$script" > "$OUT/notify_$name.txt" 2>&1
  awk '/^tps = / {printf "%.0f", $3}' "$OUT/notify_$name.txt"
}

plpgsql_on() {
  psql -X -q -v ON_ERROR_STOP=1 <<'SQL'
CREATE TRIGGER p_ins AFTER INSERT ON items REFERENCING NEW TABLE AS harbor_new
    FOR EACH STATEMENT EXECUTE FUNCTION plpgsql_notify('items');
CREATE TRIGGER p_upd AFTER UPDATE ON items REFERENCING NEW TABLE AS harbor_new
    FOR EACH STATEMENT EXECUTE FUNCTION plpgsql_notify('items');
CREATE TRIGGER p_del AFTER DELETE ON items REFERENCING OLD TABLE AS harbor_old
    FOR EACH STATEMENT EXECUTE FUNCTION plpgsql_notify('items');
SQL
}
plpgsql_off() { psql -X -q -c 'DROP TRIGGER p_ins ON items; DROP TRIGGER p_upd ON items; DROP TRIGGER p_del ON items'; }
harbor_on()   { psql -X -q -At -c "SELECT harbor.enable_change_notify('items', payload => '${1:-keys}')" >/dev/null; }
harbor_off()  { psql -X -q -At -c "SELECT harbor.disable_change_notify('items')" >/dev/null; }

u_none=$(tps update_none "$W/update.sql")
harbor_on;   u_c=$(tps update_harbor "$W/update.sql");     harbor_off
harbor_on count; u_cc=$(tps update_harbor_count "$W/update.sql"); harbor_off
plpgsql_on;  u_pl=$(tps update_plpgsql "$W/update.sql");   plpgsql_off
psql -X -q -c "CREATE TRIGGER p_empty AFTER UPDATE ON items REFERENCING NEW TABLE AS n FOR EACH STATEMENT EXECUTE FUNCTION plpgsql_empty()"
u_empty=$(tps update_empty_trigger "$W/update.sql")
psql -X -q -c "DROP TRIGGER p_empty ON items"
u_notify=$(tps update_pg_notify "$W/update_notify.sql")
r_off=""; r_on=""
if [ "$(psql -X -At -c "SELECT to_regprocedure('harbor.enable_stock(text,name)') IS NOT NULL")" = t ]; then
  psql -X -q -At -c "SELECT harbor.enable_stock('items')" >/dev/null
  r_off=$(tps reserve_off "$W/reserve.sql")
  harbor_on keys; r_on=$(tps reserve_on "$W/reserve.sql"); harbor_off
fi

echo
echo "Change notifications on the write path: pgbench -M prepared, 8 clients, ${SECS}s per run, $(nproc) cores"
printf '%-56s %10s %10s\n' "workload" "tps" "vs none"
printf '%-56s %10s %10s\n' "UPDATE 1 row, no trigger" "$u_none" "1.00"
printf '%-56s %10s %10.2f\n' "UPDATE 1 row, harbor.enable_change_notify, keys" "$u_c" "$(echo "$u_c / $u_none" | bc -l)"
printf '%-56s %10s %10.2f\n' "UPDATE 1 row, harbor.enable_change_notify, count" "$u_cc" "$(echo "$u_cc / $u_none" | bc -l)"
printf '%-56s %10s %10.2f\n' "UPDATE 1 row, PL/pgSQL transition-table trigger" "$u_pl" "$(echo "$u_pl / $u_none" | bc -l)"
printf '%-56s %10s %10.2f\n' "UPDATE 1 row, empty PL/pgSQL transition-table trigger" "$u_empty" "$(echo "$u_empty / $u_none" | bc -l)"
printf '%-56s %10s %10.2f\n' "UPDATE 1 row + pg_notify() in the statement, no trigger" "$u_notify" "$(echo "$u_notify / $u_none" | bc -l)"
if [ -n "$r_off" ]; then
  printf '%-56s %10s %10s\n' "reserve_stock + release_reservation, notify off" "$r_off" "1.00"
  printf '%-56s %10s %10.2f\n' "reserve_stock + release_reservation, notify on (keys)" "$r_on" "$(echo "$r_on / $r_off" | bc -l)"
else
  echo "(harbor.reserve_stock not installed: reservation rows skipped)"
fi
