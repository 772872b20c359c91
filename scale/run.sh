#!/usr/bin/env bash
# Four partition servers and a proxy server on this machine (separate initdb
# instances, loopback only), harbor_orm on each partition, variants 1 to
# 1,000 with 100 units each spread by item id, scale/harbor_proxy.sql on the
# proxy.
#   bash scale/run.sh up     start and load; the last line is the proxy's
#                            connection string
#   bash scale/run.sh down   stop and remove what up started
#   bash scale/run.sh        up, a checkout race through the proxy during
#                            which partition 2 is stopped (-m immediate) and
#                            started again, the ledger check, down
# harbor_orm must be installed (bash test/run_all.sh does it).  BASE_PORT
# (default 55400) and SCALE_DIR (default /tmp/harbor_scale) may be set.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=/usr/lib/postgresql/15/bin
DIR=${SCALE_DIR:-/tmp/harbor_scale}
BASE=${BASE_PORT:-55400}
NPART=4
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
port() { echo $((BASE + $1)); }          # 0..3 partitions, 4 the proxy
q() { psql -X -qAt -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -p "$(port "$1")" -d shop "${@:2}"; }

up() {
  mkdir -p "$DIR"; chmod 777 "$DIR"
  for n in $(seq 0 $NPART); do
    as_pg $BIN/initdb -D "$DIR/n$n" -U postgres -A trust >/dev/null || return 1
    printf "port = %s\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\nshared_preload_libraries = '%s'\nmax_connections = 200\n" \
      "$(port $n)" "$DIR" "$([ $n -lt $NPART ] && echo harbor_orm)" >> "$DIR/n$n/postgresql.conf"
    as_pg $BIN/pg_ctl -D "$DIR/n$n" -l "$DIR/n$n.log" -w start >/dev/null || return 1
    psql -X -q -h 127.0.0.1 -U postgres -p "$(port $n)" -d postgres -c "CREATE DATABASE shop" || return 1
  done
  for p in $(seq 0 $((NPART - 1))); do
    q $p >/dev/null <<SQL || return 1
CREATE EXTENSION harbor_orm;
CREATE TABLE variants (id bigint PRIMARY KEY, sku text, stock_qty integer NOT NULL CHECK (stock_qty >= 0));
SELECT harbor.register_model('variants');
SELECT harbor.enable_stock('variants', 'stock_qty');
INSERT INTO variants SELECT g, 'SKU-' || g, 100 FROM generate_series(1, 1000) g WHERE hashint8(g) & ($NPART - 1) = $p;
SQL
  done
  q $NPART -f scale/harbor_proxy.sql >/dev/null || return 1
  local conns=""
  for p in $(seq 0 $((NPART - 1))); do
    conns="$conns${conns:+,}'host=127.0.0.1 port=$(port $p) dbname=shop'"
  done
  q $NPART -c "SELECT harbor_proxy.set_partitions(ARRAY[$conns])" >/dev/null || return 1
  echo "host=127.0.0.1 port=$(port $NPART) user=postgres dbname=shop"
}

down() {
  for n in $(seq 0 $NPART); do
    [ -d "$DIR/n$n" ] && as_pg $BIN/pg_ctl -D "$DIR/n$n" -m fast -w stop >/dev/null 2>&1
  done
  rm -rf "$DIR"
}

ledger() {
  local total=0 bad=0
  for p in $(seq 0 $((NPART - 1))); do
    local s h b
    s=$(q $p -c "SELECT sum(stock_qty) FROM variants")
    h=$(q $p -c "SELECT coalesce(sum(qty), 0) FROM harbor.stock_reservations WHERE status IN ('active', 'confirmed')")
    b=$(q $p -c "SELECT count(*) FROM variants v WHERE v.stock_qty < 0 OR v.stock_qty + (SELECT coalesce(sum(qty), 0)
                   FROM harbor.stock_reservations r WHERE r.item_id = v.id AND r.status IN ('active', 'confirmed')) <> 100")
    echo "partition $p: stock $s + held $h = $((s + h)), items off the ledger: $b"
    total=$((total + s + h)); bad=$((bad + b))
  done
  echo "total: $total (expected 100000); items off the ledger: $bad; check_stock: $(q $NPART -c "SELECT count(*) FROM harbor_proxy.check_stock()") problems"
  [ "$total" = 100000 ] && [ "$bad" = 0 ]
}

case "${1:-all}" in
  up) up ;;
  down) down ;;
  all)
    trap down EXIT
    up >/dev/null || { echo "start failed"; exit 1; }
    echo "4 partitions and a proxy up; checkout race through the proxy (16 clients, 12 s)"
    cat > "$DIR/race.sql" <<'SQL'
\set item random(1, 1000)
\set item2 random(1, 1000)
\set ord random(1, 100000)
SELECT harbor_proxy.reserve_many('o' || :ord, jsonb_build_array(jsonb_build_object('item_id', :item, 'qty', 1),
                                               jsonb_build_object('item_id', :item2, 'qty', 1)), '1 minute');
SQL
    # a client stops at its first error (the stopped partition): each pgbench
    # round is short and the race goes on in rounds
    end=$(( $(date +%s) + 12 )); round=0
    while [ "$(date +%s)" -lt "$end" ]; do
      round=$((round + 1))
      if [ $round = 2 ]; then
        as_pg $BIN/pg_ctl -D "$DIR/n2" -m immediate -w stop >/dev/null && echo "partition 2 stopped (-m immediate)"
      elif [ $round = 4 ]; then
        as_pg $BIN/pg_ctl -D "$DIR/n2" -l "$DIR/n2.log" -w start >/dev/null && echo "partition 2 started again"
      fi
      pgbench -n -c 16 -j 2 -T 2 -f "$DIR/race.sql" -h 127.0.0.1 -U postgres -p "$(port $NPART)" shop 2>&1 \
        | sed -n 's/^number of transactions actually processed: /  round '"$round"': transactions: /p'
    done
    ledger ;;
  *) echo "usage: bash scale/run.sh [up|down]"; exit 2 ;;
esac
