#!/usr/bin/env bash
# The expiry sweeper in throwaway clusters: with harbor_orm preloaded (the
# launcher serving several databases) and without (start_sweeper and
# stop_sweeper).  Every wait polls with a deadline; the only fixed pauses
# are short observations that something does NOT happen.
#
#   bash test/suites/sweeper.sh            both clusters
#   bash test/suites/sweeper.sh preloaded  (run inside a cluster)
#   bash test/suites/sweeper.sh dynamic    (run inside a cluster)
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh

. test/lib/tap.sh

# q DB SQL...: see psql_in.
q() { psql_in "$@"; }

# sqlstate DB SQL: the SQLSTATE the statement fails with, or "ok".
sqlstate() {
  local out
  out=$(psql -X -q -v ON_ERROR_STOP=1 -d "$1" -c '\set VERBOSITY verbose' -c "$2" 2>&1 >/dev/null)
  if [ -z "$out" ] || ! grep -q 'ERROR:' <<<"$out"; then echo ok; return; fi
  sed -n '/^ERROR:  [0-9A-Z]\{5\}:/{s/^ERROR:  \([0-9A-Z]\{5\}\):.*/\1/p;q}' <<<"$out"
}

# wait_for DESCRIPTION SECONDS DB SQL EXPECTED: polls until SQL gives EXPECTED.
wait_for() { wait_until "$1" "$2" "$5" q "$3" "$4"; }

# A shop: the extension, a stock table with a CHECK, registered and enabled.
make_shop() {
  createdb "$1" || bail "create database $1"
  q "$1" "SET client_min_messages = warning;
          CREATE EXTENSION harbor_orm;
          CREATE TABLE public.items (id integer PRIMARY KEY,
                                     stock_qty integer NOT NULL CHECK (stock_qty >= 0));
          INSERT INTO public.items SELECT g, 100 FROM generate_series(1, 10) g;
          SELECT harbor.register_model('public.items');
          SELECT harbor.enable_stock('items');" >/dev/null || bail "set up shop $1"
}

# hold_lock DB SQL: runs SQL in an open transaction in the background (to
# hold the locks it takes) until release_lock.
hold_lock() {
  psql -X -q -d "$1" -c "SET application_name = 'test_locker'" \
    -c "BEGIN; $2; SELECT pg_sleep(600)" >/dev/null 2>&1 &
  wait_for "the locking session holds its lock" 15 postgres \
    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'test_locker' AND wait_event = 'PgSleep'" 1
}

release_lock() {
  q postgres "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'test_locker'" >/dev/null
  wait_for "the locking session is gone" 15 postgres \
    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'test_locker'" 0
  wait
}

status() {  # status DB FIELD: the field of DB's row in sweeper_status()
  q postgres "SELECT $2 FROM harbor.sweeper_status() WHERE database = '$1'"
}

# ---------------------------------------------------------------------
# With harbor_orm preloaded: the launcher.
# ---------------------------------------------------------------------
preloaded() {
  local pid newpid rounds logged errs

  q postgres "CREATE EXTENSION harbor_orm" >/dev/null || bail "CREATE EXTENSION"
  make_shop shop_a
  make_shop shop_b
  createdb plain
  createdb other

  wait_for "the launcher runs" 20 postgres \
    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'harbor_orm sweeper launcher'" 1 ||
    bail "no launcher"
  check "it said once that it connects as the bootstrap superuser" \
    "$(log_count 'sweeper connects as the bootstrap superuser')" 1

  # The cluster starts with a one-hour interval: the databases, created
  # after the launcher's first round, are not served yet.
  q shop_a "SELECT harbor.reserve_stock(1, 5, 'early', '1 second')" >/dev/null
  sleep 2
  check "with a 1 h interval nothing is swept yet" \
    "$(q shop_a "SELECT status FROM harbor.stock_reservations WHERE order_id = 'early'")" active

  q postgres "ALTER SYSTEM SET harbor_orm.sweep_interval = '1s'" "SELECT pg_reload_conf()" >/dev/null
  wait_for "after SIGHUP with a 1 s interval the hold expires, no restart" 15 shop_a \
    "SELECT status FROM harbor.stock_reservations WHERE order_id = 'early'" expired
  check "its stock is back" "$(q shop_a "SELECT stock_qty FROM public.items WHERE id = 1")" 100

  # Expiry with no client connected, in two databases.
  q shop_a "SELECT harbor.reserve_stock(i, 3, 'cart-a', '1 second') FROM generate_series(2, 6) i" >/dev/null
  q shop_b "SELECT harbor.reserve_stock(i, 4, 'cart-b', '1 second') FROM generate_series(1, 10) i" >/dev/null
  check "holds take stock" "$(q shop_b "SELECT sum(stock_qty) FROM public.items")" 960
  wait_for "shop_a: expired holds are released by the sweeper" 15 shop_a \
    "SELECT count(*) FROM harbor.stock_reservations WHERE order_id = 'cart-a' AND status = 'expired'" 5
  wait_for "shop_b: expired holds are released too (two databases served)" 15 shop_b \
    "SELECT count(*) FROM harbor.stock_reservations WHERE order_id = 'cart-b' AND status = 'expired'" 10
  check "shop_a stock restored" "$(q shop_a "SELECT sum(stock_qty) FROM public.items")" 1000
  check "shop_b stock restored" "$(q shop_b "SELECT sum(stock_qty) FROM public.items")" 1000
  check "check_stock finds nothing in shop_b" "$(q shop_b "SELECT count(*) FROM harbor.check_stock()")" 0
  check "status counts the released holds" "$(status shop_b released_total)" 10
  wait_for "status: both shops ok" 10 postgres \
    "SELECT string_agg(database || '=' || state, ',' ORDER BY database) FROM harbor.sweeper_status()
      WHERE database LIKE 'shop_%' AND state IN ('ok', 'sweeping')" "shop_a=ok,shop_b=ok"
  check "status is visible from a database without the extension's tables" \
    "$(q other "SELECT count(*) FROM pg_catalog.pg_proc WHERE proname = 'sweeper_status'")|$(status shop_a "launcher_pid IS NOT NULL")" "0|t"

  # Databases that cannot be swept: listed but absent, or without the extension.
  q postgres "ALTER SYSTEM SET harbor_orm.sweeper_databases = 'shop_a, shop_b, plain, missing'" "SELECT pg_reload_conf()" >/dev/null
  wait_for "a database without the extension is skipped" 15 postgres \
    "SELECT state FROM harbor.sweeper_status() WHERE database = 'plain'" no_extension
  wait_for "a missing database is skipped" 15 postgres \
    "SELECT state FROM harbor.sweeper_status() WHERE database = 'missing'" no_database
  rounds=$(status shop_a rounds)
  wait_for "shop_a is still swept every round meanwhile" 15 postgres \
    "SELECT rounds >= $rounds + 3 FROM harbor.sweeper_status() WHERE database = 'shop_a'" t
  check "one LOG line for the database without the extension, however many rounds" \
    "$(log_count 'skipping database "plain": extension "harbor_orm" is not installed')" 1
  check "one LOG line for the missing database" \
    "$(log_count 'skipping database "missing": it does not exist')" 1
  q plain "SET client_min_messages = warning; CREATE EXTENSION harbor_orm" >/dev/null
  wait_for "once the extension is installed the database is served" 15 postgres \
    "SELECT state FROM harbor.sweeper_status() WHERE database = 'plain'" ok
  check "invalid sweeper_databases is refused" \
    "$(sqlstate postgres "ALTER SYSTEM SET harbor_orm.sweeper_databases = 'a, \"b'")" 22023
  check "more than 64 databases are refused" \
    "$(sqlstate postgres "ALTER SYSTEM SET harbor_orm.sweeper_databases = '$(seq -s, -f 'db%g' 1 65)'")" 22023

  # An error in one database's sweep: recorded, logged once with its
  # context, and the other databases go on.
  q shop_b "SELECT harbor.reserve_stock(1, 7, 'broken', '1 second');
            ALTER TABLE public.items ADD CONSTRAINT at_most_95 CHECK (stock_qty <= 95) NOT VALID" >/dev/null
  wait_for "a failing sweep is recorded in the status" 15 postgres \
    "SELECT state || ': ' || last_error FROM harbor.sweeper_status() WHERE database = 'shop_b'" \
    'error: new row for relation "items" violates check constraint "at_most_95"'
  q shop_a "SELECT harbor.reserve_stock(7, 1, 'meanwhile', '1 second')" >/dev/null
  wait_for "the other database is still swept" 15 shop_a \
    "SELECT status FROM harbor.stock_reservations WHERE order_id = 'meanwhile'" expired
  rounds=$(status shop_b rounds)
  wait_for "the failing database is retried every round" 15 postgres \
    "SELECT rounds >= $rounds + 2 AND errors >= 3 FROM harbor.sweeper_status() WHERE database = 'shop_b'" t
  check "the error is logged once, not every round" \
    "$(log_count 'sweeper could not finish its round in database "shop_b": new row for relation "items" violates check constraint "at_most_95"')" 1
  check "with the sweep's context" \
    "$(log_count '^[[:space:]]*harbor_orm sweeper releasing expired reservations in database "shop_b"$')" 1
  q shop_b "ALTER TABLE public.items DROP CONSTRAINT at_most_95" >/dev/null
  wait_for "once fixed, the hold is released" 15 shop_b \
    "SELECT status FROM harbor.stock_reservations WHERE order_id = 'broken'" expired
  wait_for "and the state is ok again" 10 postgres "SELECT state FROM harbor.sweeper_status() WHERE database = 'shop_b'" ok
  check "recovery is logged" "$(log_count 'swept database "shop_b" without error again')" 1

  # A stock table locked for long (a long ALTER TABLE) in one database
  # holds up neither the other databases nor later rounds, and its holds
  # are released once the lock is gone.
  q shop_a "SELECT harbor.reserve_stock(2, 1, 'behind-lock', '1 second')" >/dev/null
  hold_lock shop_a "LOCK TABLE public.items IN ACCESS EXCLUSIVE MODE"
  q shop_b "SELECT harbor.reserve_stock(2, 1, 'beside-lock', '1 second')" >/dev/null
  wait_for "a stock table locked in shop_a does not hold up shop_b" 15 shop_b \
    "SELECT status FROM harbor.stock_reservations WHERE order_id = 'beside-lock'" expired
  rounds=$(status shop_a rounds)
  wait_for "shop_a is tried again every round" 20 postgres \
    "SELECT rounds >= $rounds + 3 FROM harbor.sweeper_status() WHERE database = 'shop_a'" t
  check "the hold behind the lock is still active" \
    "$(q shop_a "SELECT status FROM harbor.stock_reservations WHERE order_id = 'behind-lock'")" active
  release_lock
  wait_for "once the lock is gone the hold is released" 15 shop_a \
    "SELECT status FROM harbor.stock_reservations WHERE order_id = 'behind-lock'" expired
  wait_for "and shop_a's state is ok" 10 postgres \
    "SELECT state FROM harbor.sweeper_status() WHERE database = 'shop_a'" ok

  # A lock the sweep has to wait for (here: on harbor.stock_reservations)
  # is waited for at most harbor_orm.sweep_lock_timeout (1 s): the round
  # ends, one LOG line says so, and every round tries again.
  logged=$(log_count 'skipped the rest of its round in database "shop_a": canceling statement due to lock timeout')
  errs=$(status shop_a errors)
  q shop_a "SELECT harbor.reserve_stock(2, 1, 'behind-lock-2', '1 second')" >/dev/null
  hold_lock shop_a "LOCK TABLE harbor.stock_reservations IN EXCLUSIVE MODE"
  q shop_b "SELECT harbor.reserve_stock(2, 1, 'beside-lock-2', '1 second')" >/dev/null
  wait_for "a lock in shop_a does not hold up shop_b" 15 shop_b \
    "SELECT status FROM harbor.stock_reservations WHERE order_id = 'beside-lock-2'" expired
  wait_for "shop_a's round ends at the lock timeout" 15 postgres \
    "SELECT state FROM harbor.sweeper_status() WHERE database = 'shop_a'" lock_timeout
  rounds=$(status shop_a rounds)
  wait_for "and is tried again every round" 20 postgres \
    "SELECT rounds >= $rounds + 3 FROM harbor.sweeper_status() WHERE database = 'shop_a'" t
  check "one LOG line for the lock timeout, however many rounds" \
    "$(log_count 'skipped the rest of its round in database "shop_a": canceling statement due to lock timeout')" $((logged + 1))
  check "a lock timeout is not counted as an error" "$(status shop_a errors)" "$errs"
  release_lock
  wait_for "once the lock is gone that hold is released too" 15 shop_a \
    "SELECT status FROM harbor.stock_reservations WHERE order_id = 'behind-lock-2'" expired
  wait_for "and shop_a's state is ok again" 10 postgres \
    "SELECT state FROM harbor.sweeper_status() WHERE database = 'shop_a'" ok

  # A batch that runs too long (a trigger that sleeps) is cancelled at
  # harbor_orm.sweep_statement_timeout; the other databases go on.
  q postgres "ALTER SYSTEM SET harbor_orm.sweep_statement_timeout = '2s'" "SELECT pg_reload_conf()" >/dev/null
  q shop_a "SELECT harbor.reserve_stock(3, 1, 'slow', '1 second');
            CREATE FUNCTION public.slow() RETURNS trigger LANGUAGE plpgsql
              AS 'BEGIN PERFORM pg_sleep(600); RETURN NEW; END';
            CREATE TRIGGER slow BEFORE UPDATE ON public.items
              FOR EACH ROW EXECUTE FUNCTION public.slow()" >/dev/null
  wait_for "a batch longer than sweep_statement_timeout is cancelled" 15 postgres \
    "SELECT state || ': ' || last_error FROM harbor.sweeper_status() WHERE database = 'shop_a'" \
    'error: canceling statement due to statement timeout'
  q shop_b "SELECT harbor.reserve_stock(3, 1, 'beside-slow', '1 second')" >/dev/null
  wait_for "meanwhile shop_b is swept" 20 shop_b \
    "SELECT status FROM harbor.stock_reservations WHERE order_id = 'beside-slow'" expired
  q shop_a "DROP TRIGGER slow ON public.items; DROP FUNCTION public.slow()" >/dev/null
  wait_for "without the trigger the slow hold is released" 15 shop_a \
    "SELECT status FROM harbor.stock_reservations WHERE order_id = 'slow'" expired

  # A worker stuck where no timeout reaches it (here: connecting to a
  # database that an open ALTER DATABASE RENAME keeps locked, with
  # sweep_lock_timeout = 0) is terminated by the launcher once it has
  # finished no batch for sweep_statement_timeout + 10 s; the launcher
  # goes on with the other databases.
  q postgres "ALTER SYSTEM SET harbor_orm.sweep_lock_timeout = 0" "SELECT pg_reload_conf()" >/dev/null
  hold_lock postgres "ALTER DATABASE shop_a RENAME TO shop_a_renamed"
  q shop_b "SELECT harbor.reserve_stock(4, 1, 'beside-stuck', '1 second')" >/dev/null
  wait_log "the launcher terminates a worker that makes no progress" 30 \
    'sweeper worker for database "shop_a" has finished no batch for 1[0-9] s; terminating it' 1
  wait_for "and goes on: shop_b is swept" 20 shop_b \
    "SELECT status FROM harbor.stock_reservations WHERE order_id = 'beside-stuck'" expired
  check "the status says why" \
    "$(status shop_a "state || ': ' || (last_error LIKE 'sweeper worker terminated after 1_ s without progress')")" "error: true"
  release_lock
  q postgres "ALTER SYSTEM RESET harbor_orm.sweep_lock_timeout" \
    "ALTER SYSTEM RESET harbor_orm.sweep_statement_timeout" "SELECT pg_reload_conf()" >/dev/null
  wait_for "shop_a is served again" 20 postgres \
    "SELECT state FROM harbor.sweeper_status() WHERE database = 'shop_a'" ok

  # The sweeper acts as harbor_orm.sweeper_role.
  q postgres "CREATE ROLE sweeper LOGIN" >/dev/null
  q postgres "ALTER SYSTEM SET harbor_orm.sweeper_role = 'nobody_here'" "SELECT pg_reload_conf()" >/dev/null
  wait_for "a role that does not exist: skipped" 15 postgres \
    "SELECT state FROM harbor.sweeper_status() WHERE database = 'shop_a'" bad_role
  q postgres "ALTER SYSTEM SET harbor_orm.sweeper_role = 'sweeper'" "SELECT pg_reload_conf()" >/dev/null
  q shop_a "SELECT harbor.reserve_stock(8, 2, 'as-role', '1 second')" >/dev/null
  wait_for "a role without privileges: the sweep fails with permission denied" 15 postgres \
    "SELECT last_error LIKE 'permission denied for table %' FROM harbor.sweeper_status() WHERE database = 'shop_a'" t
  q shop_a "GRANT SELECT ON harbor.model, harbor.relationship TO sweeper;
            GRANT SELECT, UPDATE, DELETE ON harbor.stock_reservations TO sweeper;
            GRANT SELECT, UPDATE ON public.items TO sweeper" >/dev/null
  wait_for "with the documented grants the role sweeps" 15 shop_a \
    "SELECT status FROM harbor.stock_reservations WHERE order_id = 'as-role'" expired
  q postgres "ALTER SYSTEM SET harbor_orm.sweeper_role = ''" "SELECT pg_reload_conf()" >/dev/null
  wait_log "setting the role back to empty says so again" 10 'sweeper connects as the bootstrap superuser' 2

  check "start_sweeper refuses a database the launcher serves" \
    "$(sqlstate shop_a "SELECT harbor.start_sweeper()")" 55000

  # DROP DATABASE while the sweeper is working in it: it leaves.
  make_shop shop_c
  q postgres "ALTER SYSTEM SET harbor_orm.sweeper_databases = 'shop_a, shop_c'" \
    "ALTER SYSTEM SET harbor_orm.sweep_batch_size = 20" "SELECT pg_reload_conf()" >/dev/null
  q shop_c "UPDATE public.items SET stock_qty = 100000;
            SELECT count(harbor.reserve_stock(1 + g % 10, 1, 'o' || g, '1 second')) FROM generate_series(1, 30000) g" >/dev/null
  wait_for "shop_c is being swept in small batches" 30 postgres \
    "SELECT state = 'sweeping' AND released_last > 0 FROM harbor.sweeper_status() WHERE database = 'shop_c'" t
  check "DROP DATABASE of the database being swept succeeds" "$(sqlstate postgres "DROP DATABASE shop_c")" ok
  wait_log "the sweeper logged that it left for the DROP" 10 'left database "shop_c" to a pending DROP DATABASE' 1
  wait_for "the dropped database is then reported missing" 15 postgres \
    "SELECT state FROM harbor.sweeper_status() WHERE database = 'shop_c'" no_database
  q postgres "ALTER SYSTEM RESET harbor_orm.sweep_batch_size" "SELECT pg_reload_conf()" >/dev/null

  # SIGTERM: the launcher exits and the postmaster restarts it (5 s).
  pid=$(status shop_a launcher_pid)
  q postgres "SELECT pg_terminate_backend($pid)" >/dev/null
  wait_for "after SIGTERM the launcher is restarted" 30 postgres \
    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'harbor_orm sweeper launcher' AND pid <> $pid" 1

  # SIGKILL: the postmaster resets every backend (crash recovery) and the
  # launcher comes back; the cluster serves again.
  pid=$(q postgres "SELECT pid FROM pg_stat_activity WHERE backend_type = 'harbor_orm sweeper launcher'")
  kill -9 "$pid"
  wait_for "after SIGKILL the cluster recovers and the launcher is back" 60 postgres \
    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'harbor_orm sweeper launcher' AND pid <> $pid" 1
  check "the postmaster saw the crash" "$(log_count "(PID $pid) was terminated by signal 9")" 1
  q shop_a "SELECT harbor.reserve_stock(9, 1, 'after-crash', '1 second')" >/dev/null
  wait_for "holds expire again after the crash" 20 shop_a \
    "SELECT status FROM harbor.stock_reservations WHERE order_id = 'after-crash'" expired
  check "no stock lost in shop_a" "$(q shop_a "SELECT sum(stock_qty) FROM public.items")" 1000

  # Release batches under checkouts of the same items: each batch asks,
  # before it commits, whether a checkout waits for it (to size the next
  # one); the question must log nothing, and every expired hold goes back.
  q shop_a "UPDATE public.items SET stock_qty = 100000" \
    "SELECT count(*) FROM (SELECT harbor.reserve_stock((g % 10) + 1, 1, 'busy-' || g, '1 millisecond')
                              FROM generate_series(1, 5000) g) s" >/dev/null
  local script
  script=$(mktemp)
  printf '%s\n' '\set id random(1, 10)' '\set o random(1, 900000000)' \
    "SELECT harbor.reserve_stock(:id, 1, 'live-' || :o, '1 hour');" >"$script"
  /usr/lib/postgresql/15/bin/pgbench -n -c 8 -j 2 -T 4 -f "$script" shop_a >/dev/null 2>&1
  check "checkouts ran beside the sweep" "$?" 0
  rm -f "$script"
  wait_for "expired holds go back while checkouts take the same items" 60 shop_a \
    "SELECT count(*) FROM harbor.stock_reservations WHERE status = 'active' AND expires_at < now()" 0
  check "the batches' waiter check logs nothing" "$(log_count "you don't own a lock")" 0

  # Switched off by harbor_orm.sweeper_enabled.
  q postgres "ALTER SYSTEM SET harbor_orm.sweeper_enabled = off" "SELECT pg_reload_conf()" >/dev/null
  wait_for "sweeper_enabled = off disables it" 10 postgres \
    "SELECT state FROM harbor.sweeper_status() WHERE database = 'shop_a'" disabled
  finish
}

# ---------------------------------------------------------------------
# Without preloading: start_sweeper() and stop_sweeper().
# ---------------------------------------------------------------------
dynamic() {
  local pid

  make_shop d1
  make_shop d2
  make_shop d3
  check "no launcher without preloading" \
    "$(q d1 "SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'harbor_orm%'")" 0
  check "start_sweeper is not granted to PUBLIC" \
    "$(q d1 "CREATE ROLE clerk LOGIN" "SET ROLE clerk; SELECT harbor.start_sweeper()")" \
    "ERROR:  permission denied for function start_sweeper"

  pid=$(q d1 "SELECT harbor.start_sweeper()")
  check "start_sweeper returns the worker's pid" \
    "$(q d1 "SELECT backend_type || '/' || datname FROM pg_stat_activity WHERE pid = $pid")" "harbor_orm sweeper/d1"
  check "a second start_sweeper returns the same worker, with a notice" \
    "$(q d1 "SELECT harbor.start_sweeper()" | tr '\n' ' ')" "NOTICE:  the sweeper of database \"d1\" is already running $pid "

  q d1 "SELECT harbor.reserve_stock(1, 2, 'dyn', '1 second')" >/dev/null
  wait_for "the dynamic worker releases expired holds" 15 d1 \
    "SELECT status FROM harbor.stock_reservations WHERE order_id = 'dyn'" expired
  check "its status is visible from another database" \
    "$(q postgres "CREATE EXTENSION harbor_orm; SELECT mode || '/' || pid FROM harbor.sweeper_status() WHERE database = 'd1'")" "dynamic/$pid"

  # max_worker_processes = 3: the logical replication launcher and d1's
  # sweeper leave one slot.
  pid=$(q d2 "SELECT harbor.start_sweeper()")
  check "a worker for d2 starts in the last slot" "$(q d2 "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid")" 1
  check "no free slot: configuration_limit_exceeded" "$(sqlstate d3 "SELECT harbor.start_sweeper()")" 53400
  check "with a hint to raise max_worker_processes" \
    "$(q d3 "SELECT harbor.start_sweeper()" | grep -c 'HINT:  Raise max_worker_processes')" 1
  check "the failed start leaves no status behind" "$(q d3 "SELECT count(*) FROM harbor.sweeper_status() WHERE database = 'd3'")" 0

  check "a role that may execute stop_sweeper still needs the worker's privileges" \
    "$(q d2 "GRANT EXECUTE ON FUNCTION harbor.stop_sweeper() TO clerk" "SET ROLE clerk" "SELECT harbor.stop_sweeper()" | sed -n 1p)" \
    "ERROR:  permission denied to stop the sweeper of database \"d2\""
  check "a role that cannot log in cannot start one" \
    "$(q d3 "CREATE ROLE nologin_admin SUPERUSER NOLOGIN" "SET ROLE nologin_admin" "SELECT harbor.start_sweeper()" | sed -n 1p)" \
    "ERROR:  role \"nologin_admin\" cannot start the sweeper"

  # DROP DATABASE while a dynamic worker serves it: it steps aside.
  check "DROP DATABASE of a database with a dynamic sweeper succeeds" "$(sqlstate postgres "DROP DATABASE d2")" ok
  wait_for "its worker is gone" 10 postgres "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid" 0

  pid=$(q d1 "SELECT pid FROM harbor.sweeper_status() WHERE database = 'd1'")
  check "stop_sweeper stops it" "$(q d1 "SELECT harbor.stop_sweeper()")" t
  check "the worker has exited" "$(q d1 "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid")" 0
  check "the status says stopped" "$(q d1 "SELECT state || '/' || (pid IS NULL) FROM harbor.sweeper_status() WHERE database = 'd1'")" "stopped/true"
  check "stopping again returns false" "$(q d1 "SELECT harbor.stop_sweeper()")" f
  pid=$(q d3 "SELECT harbor.start_sweeper()")
  check "a freed slot can be used again" "$(q d3 "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid")" 1
  q d3 "SELECT harbor.stop_sweeper()" >/dev/null
  finish
}

case "${1:-}" in
  preloaded) preloaded ;;
  dynamic) dynamic ;;
  "")
    rc=0
    echo "# cluster 1: harbor_orm preloaded"
    in_cluster -o harbor_orm.sweep_interval=1h \
      -o "harbor_orm.sweeper_databases=shop_a,shop_b" -- bash "$0" preloaded || rc=1
    echo "# cluster 2: harbor_orm not preloaded"
    pg_virtualenv -t -v 15 -o max_worker_processes=3 -o harbor_orm.sweep_interval=1s \
      bash "$0" dynamic || rc=1
    exit $rc
    ;;
  *) echo "usage: $0 [preloaded|dynamic]" >&2; exit 2 ;;
esac
