#!/usr/bin/env bash
# Runs inside the client suite's cluster (PG* variables point at it).
set -uo pipefail
cd "$(dirname "$0")/../.."
fail=0
tmp=${HARBOR_TMP:-$(mktemp -d)}
harbor=src/client/harbor

fresh_db() {
  createdb "$1" &&
  psql -X -q -d "$1" -v ON_ERROR_STOP=1 -f test/client/fixture.sql >/dev/null &&
  psql -X -q -d "$1" -v ON_ERROR_STOP=1 -f test/client/stubs.sql >/dev/null
}
ok()    { echo "ok - $*"; }
notok() { echo "not ok - $*"; fail=1; }

# ---------------------------------------------------------------- library, direct, valgrind
echo "== libharbor, direct connection, under valgrind"
fresh_db client_direct || exit 1
if [ "$(psql -X -At -d client_direct -c "SELECT to_regprocedure('harbor.reserve_stock(bigint,integer,text,interval,text)')::oid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = 'harbor.reserve_stock(bigint,integer,text,interval,text)'::regprocedure AND d.deptype = 'e')")" = t ]; then
  echo "# reservation functions: stand-ins from test/client/stubs.sql (server side not installed)"
fi
if valgrind -q --leak-check=full --show-leak-kinds=definite,indirect,possible \
     --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=99 \
     src/client/test_client "dbname=client_direct" "dbname=client_direct" direct > "$tmp/direct.out" 2> "$tmp/direct.err"; then
  ok "test_client direct: $(grep -c '^ok' "$tmp/direct.out") checks passed, valgrind clean"
else
  notok "test_client direct (exit $?)"
  grep -v '^ok' "$tmp/direct.out"; cat "$tmp/direct.err"
fi

# ---------------------------------------------------------------- library through PgBouncer
echo "== libharbor through PgBouncer, transaction pooling"
fresh_db client_pooled || exit 1
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
bdir=$(mktemp -d)
chmod 755 "$bdir"
cat > "$bdir/pgbouncer.ini" <<INI
[databases]
harbor_pool = host=127.0.0.1 port=$PGPORT dbname=client_pooled user=$PGUSER password=$PGPASSWORD

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $bdir/userlist.txt
pool_mode = transaction
default_pool_size = 2
max_client_conn = 100
logfile = $bdir/pgbouncer.log
pidfile = $bdir/pgbouncer.pid
INI
echo "\"$PGUSER\" \"\"" > "$bdir/userlist.txt"
chmod 644 "$bdir"/*
if [ "$(id -u)" -eq 0 ]; then
  chown -R postgres "$bdir"
  runuser -u postgres -- pgbouncer -d "$bdir/pgbouncer.ini"
else
  pgbouncer -d "$bdir/pgbouncer.ini"
fi
pooled="host=127.0.0.1 port=$port dbname=harbor_pool user=$PGUSER"
up=0
for _ in $(seq 1 100); do
  if psql -X -At "$pooled" -c 'SELECT 1' >/dev/null 2>&1; then up=1; break; fi
  sleep 0.1
done
if [ $up -eq 1 ]; then
  mode=$(psql -X -At "host=127.0.0.1 port=$port dbname=pgbouncer user=$PGUSER" -c 'SHOW CONFIG' 2>/dev/null | awk -F'|' '$1 == "pool_mode" {print $2}')
  echo "# pgbouncer on port $port, pool_mode=${mode:-transaction}"
  if src/client/test_client "$pooled" "dbname=client_pooled" pooled > "$tmp/pooled.out" 2>&1; then
    ok "test_client through PgBouncer: $(grep -c '^ok' "$tmp/pooled.out") checks passed"
  else
    notok "test_client through PgBouncer"; grep -v '^ok' "$tmp/pooled.out"
  fi
  # the pool really was shared: at most default_pool_size server connections
  n=$(psql -X -At -d client_pooled -c "SELECT count(*) FROM pg_stat_activity WHERE datname = 'client_pooled' AND pid <> pg_backend_pid()")
  if [ "$n" -le 2 ]; then ok "PgBouncer used $n server connection(s) for all clients"; else notok "$n server connections behind the pool"; fi
else
  notok "pgbouncer did not start"; cat "$bdir/pgbouncer.log"
fi
[ -f "$bdir/pgbouncer.pid" ] && kill "$(cat "$bdir/pgbouncer.pid")" 2>/dev/null
rm -rf "$bdir"

# ---------------------------------------------------------------- CLI
echo "== harbor CLI"
fresh_db client_cli || exit 1
export PGDATABASE=client_cli

# expect_exit CODE DESCRIPTION -- command...
expect_exit() {
  local want=$1 what=$2; shift 3
  "$@" > "$tmp/out" 2> "$tmp/err"
  local got=$?
  if [ "$got" -eq "$want" ]; then ok "$what (exit $got)"; else notok "$what: exit $got, wanted $want"; cat "$tmp/out" "$tmp/err"; fi
}
one_line_err() {
  if [ "$(wc -l < "$tmp/err")" -eq 1 ]; then ok "$1: one line: $(cat "$tmp/err")"; else notok "$1: $(wc -l < "$tmp/err") lines on stderr"; cat "$tmp/err"; fi
}

expect_exit 0 "harbor --help" -- $harbor --help
grep -q "insufficient stock" "$tmp/out" && ok "--help documents exit codes" || notok "--help lacks exit codes"
for c in reserve reserve-many confirm release extend sweep load get find models status listen; do
  expect_exit 0 "harbor $c --help" -- $harbor $c --help
done
expect_exit 2 "no command" -- $harbor
expect_exit 2 "unknown command" -- $harbor frobnicate
expect_exit 2 "non-numeric item" -- $harbor reserve one 1 order
expect_exit 2 "missing arguments" -- $harbor reserve 1
expect_exit 2 "unknown option" -- $harbor reserve --bogus 1 1 x
expect_exit 2 "server rejects qty 0" -- $harbor reserve 2 0 cli-0
one_line_err "invalid argument"

expect_exit 4 "server down" -- $harbor --dsn "host=127.0.0.1 port=1 connect_timeout=2" models
one_line_err "server down"
expect_exit 4 "malformed DSN" -- $harbor --dsn "no such thing" models
one_line_err "malformed DSN"
expect_exit 4 "PGPORT pointing nowhere" -- env PGHOST=127.0.0.1 PGPORT=1 $harbor models
one_line_err "PGPORT pointing nowhere"
expect_exit 0 "--dsn with a URI" -- $harbor --dsn "postgresql:///client_cli?host=$PGHOST&port=$PGPORT" models

expect_exit 0 "models" -- $harbor models
grep -q ct_items "$tmp/out" && grep -q "ct_items.product -> ct_products (many_to_one)" "$tmp/out" \
  && ok "models shows models and relationships" || { notok "models output"; cat "$tmp/out"; }
expect_exit 0 "reserve" -- $harbor reserve 1 2 cli-1
grep -q "reserved 2 x ct_items 1 for order cli-1" "$tmp/out" && ok "reserve prints the hold" || { notok "reserve output"; cat "$tmp/out"; }
expect_exit 3 "insufficient stock" -- $harbor reserve 1 5 cli-2
one_line_err "insufficient stock"
grep -q "insufficient_stock" "$tmp/err" && ok "message names the refusal" || notok "refusal message"
expect_exit 3 "insufficient stock, --json" -- $harbor --json reserve 1 5 cli-2
python3 -c 'import json,sys; d = json.load(open(sys.argv[1])); assert d["error"]["sqlstate"] == "HB001"' "$tmp/out" \
  && ok "--json error object with HB001" || { notok "--json error"; cat "$tmp/out"; }
expect_exit 1 "other error (read-only session)" -- $harbor --dsn "dbname=client_cli options='-c default_transaction_read_only=on'" reserve 2 1 cli-ro
one_line_err "other error"
expect_exit 5 "unknown item" -- $harbor reserve 999999 1 cli-3
expect_exit 6 "confirm what is not held" -- $harbor confirm no-such-order
expect_exit 0 "reserve-many --json" -- $harbor --json reserve-many cli-4 3:1 4:2 --ttl "5 minutes"
python3 -c 'import json,sys; d = json.load(open(sys.argv[1])); assert [r["item_id"] for r in d] == [3, 4]' "$tmp/out" \
  && ok "reserve-many JSON lists both lines" || { notok "reserve-many JSON"; cat "$tmp/out"; }
expect_exit 2 "reserve-many with a bad line" -- $harbor reserve-many cli-5 3-1
expect_exit 0 "extend" -- $harbor extend cli-4 "20 minutes"
expect_exit 0 "confirm" -- $harbor confirm cli-4
grep -q "confirmed 2 reservation" "$tmp/out" && ok "confirm counts" || { notok "confirm output"; cat "$tmp/out"; }
expect_exit 0 "release" -- $harbor release cli-1 1
grep -q "released 1" "$tmp/out" && ok "release counts" || { notok "release output"; cat "$tmp/out"; }
expect_exit 0 "sweep" -- $harbor sweep --batch 100
expect_exit 0 "status" -- $harbor status
grep -q "expiry sweeper" "$tmp/out" && ok "status shows the sweeper section" || notok "status output"
expect_exit 0 "status of an item" -- $harbor --json status 1
grep -q available "$tmp/out" && ok "item status has availability" || notok "item status"
expect_exit 0 "load" -- $harbor load ct_items 2 3
grep -q "item 3" "$tmp/out" && grep -q "(2 rows)" "$tmp/out" && ok "load table" || { notok "load output"; cat "$tmp/out"; }
expect_exit 0 "get --json" -- $harbor get ct_items 2 --json
python3 -c 'import json,sys; d = json.load(open(sys.argv[1])); assert d["id"] == 2' "$tmp/out" && ok "get JSON" || notok "get JSON"
expect_exit 0 "find" -- $harbor find ct_items --filter '{"product_id": 2}' --limit 3 --order-by id
grep -q "(3 rows)" "$tmp/out" && ok "find honours the limit" || { notok "find output"; cat "$tmp/out"; }
expect_exit 2 "find on an unknown model" -- $harbor find nope
expect_exit 2 "hostile id" -- $harbor get ct_items "1'; DROP TABLE client_t.items; --"
[ "$(psql -X -At -c "SELECT count(*) FROM client_t.items")" = 20 ] && ok "table intact" || notok "table changed"

# listen: a reservation's commit arrives, printed by harbor listen; first
# the default payload (a count, no keys) on the default channel, then keys
# on a channel of the model's own, as the one who enables them chooses
listen_once() {  # CHANNEL ITEM ORDER EXPECTED-LINE
  $harbor listen --channel "$1" --count 1 --timeout 30 > "$tmp/listen.out" 2>&1 &
  local lpid=$! lrc
  for _ in $(seq 1 100); do
    [ "$(psql -X -At -c "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN \"$1\"'")" = 1 ] && break
    sleep 0.1
  done
  $harbor reserve "$2" 1 "$3" >/dev/null
  wait $lpid
  lrc=$?
  if [ $lrc -eq 0 ] && [ "$(cat "$tmp/listen.out")" = "$4" ]; then
    ok "harbor listen --channel $1 printed: $(cat "$tmp/listen.out")"
  else
    notok "harbor listen --channel $1 (exit $lrc)"; cat "$tmp/listen.out"
  fi
}
psql -X -q -c "SELECT harbor.enable_change_notify('ct_items')" >/dev/null
listen_once harbor_changes 7 cli-listen "update   ct_items         count=1"
psql -X -q -c "SELECT harbor.enable_change_notify('ct_items', channel => 'ct_items_changes', payload => 'keys')" >/dev/null
listen_once ct_items_changes 8 cli-listen-keys "update   ct_items         ids=[8]"
psql -X -q -c "SELECT harbor.disable_change_notify('ct_items')" >/dev/null
expect_exit 0 "listen --json with nothing to hear" -- $harbor --json listen --timeout 1

[ $fail -eq 0 ] && echo "client suite: all passed"
exit $fail
