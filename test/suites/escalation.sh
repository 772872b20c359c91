#!/usr/bin/env bash
# Escalation through the background sweeper, in a throwaway cluster.
#
# A non-superuser, shop_owner, owns a registered stock table and attaches
# code to it, in turn: a BEFORE UPDATE trigger, a CHECK constraint, a
# column default and a generated column, an index expression, a trigger
# that redirects the session's search_path to an operator of its own, and
# a trigger whose attack is left to fail.  Each piece of code tries to make
# shop_owner a superuser, to grant it role vip, and to zero a row of
# other_owner's stock table, and records who it ran as.  Holds with a
# 1-second TTL on both owners' tables are then left to the background
# sweeper, and the suite checks that shop_owner gained nothing, that the
# code ran as shop_owner (or failed without effect), and that
# other_owner's holds were released all the same.  Everything runs twice:
# with harbor_orm.sweeper_role unset (the bootstrap superuser) and set to a
# dedicated role that has the documented grants, UPDATE on both stock
# tables included.
#
#   bash test/suites/escalation.sh        a fresh cluster
#   bash test/suites/escalation.sh run    (inside a cluster)
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh

. test/lib/tap.sh

# q SQL...: the result in database shop (see psql_in).
q() { psql_in shop "$@"; }

# as ROLE SQL: one transaction in database shop as ROLE (SET ROLE).
as() {
  q "BEGIN; SET LOCAL ROLE $1; $2; COMMIT;"
}

# wait_for DESCRIPTION SECONDS SQL EXPECTED: polls until SQL gives EXPECTED.
wait_for() { wait_until "$1" "$2" "$4" q "$3"; }

# ---------------------------------------------------------------------
# Set-up: two owners, two registered stock tables, the attack.
# ---------------------------------------------------------------------
setup() {
  local out
  createdb shop || bail "create database shop"
  out=$(q "SET client_min_messages = warning;
    CREATE EXTENSION harbor_orm;
    CREATE ROLE shop_owner LOGIN;
    CREATE ROLE other_owner LOGIN;
    CREATE ROLE vip NOLOGIN;
    CREATE ROLE harbor_sweeper LOGIN;
    CREATE SCHEMA shop AUTHORIZATION shop_owner;
    CREATE SCHEMA other AUTHORIZATION other_owner;
    -- both owners reserve on their own tables
    GRANT SELECT, INSERT, UPDATE ON harbor.stock_reservations TO shop_owner, other_owner;
    -- the dedicated sweeper role: the grants docs/sweeper.md lists
    GRANT SELECT ON harbor.model, harbor.relationship TO harbor_sweeper;
    GRANT SELECT, UPDATE, DELETE ON harbor.stock_reservations TO harbor_sweeper;

    SET ROLE other_owner;
    CREATE TABLE other.items (id integer PRIMARY KEY, stock_qty integer NOT NULL);
    INSERT INTO other.items SELECT g, 100 FROM generate_series(1, 10) g;
    GRANT USAGE ON SCHEMA other TO harbor_sweeper;
    GRANT SELECT, UPDATE ON other.items TO harbor_sweeper;
    RESET ROLE;

    SET ROLE shop_owner;
    CREATE TABLE shop.items (id integer PRIMARY KEY, stock_qty integer NOT NULL);
    INSERT INTO shop.items SELECT g, 100 FROM generate_series(1, 10) g;
    GRANT SELECT, UPDATE ON shop.items TO harbor_sweeper;
    -- Who ran the code, and what each attempt gave.  Writable by anyone,
    -- so that the code can always say who it ran as.
    CREATE TABLE shop.log (via text, cur name, sess name, app text, outcome text,
                           at timestamptz DEFAULT clock_timestamp());
    GRANT USAGE ON SCHEMA shop TO PUBLIC;
    GRANT INSERT ON shop.log TO PUBLIC;
    CREATE FUNCTION shop.attack(via text) RETURNS boolean LANGUAGE plpgsql AS \$f\$
    DECLARE
      outcome text := '';
    BEGIN
      BEGIN
        ALTER ROLE shop_owner SUPERUSER;
        outcome := outcome || ' superuser:granted';
      EXCEPTION WHEN OTHERS THEN
        outcome := outcome || ' superuser:' || SQLSTATE;
      END;
      BEGIN
        GRANT vip TO shop_owner;
        outcome := outcome || ' vip:granted';
      EXCEPTION WHEN OTHERS THEN
        outcome := outcome || ' vip:' || SQLSTATE;
      END;
      BEGIN
        UPDATE other.items SET stock_qty = 0 WHERE id = 10;
        outcome := outcome || ' other:updated';
      EXCEPTION WHEN OTHERS THEN
        outcome := outcome || ' other:' || SQLSTATE;
      END;
      INSERT INTO shop.log (via, cur, sess, app, outcome)
        VALUES (via, current_user, session_user, current_setting('application_name'), outcome);
      RETURN true;
    END
    \$f\$;
    CREATE FUNCTION shop.attack_trigger() RETURNS trigger LANGUAGE plpgsql AS
      \$f\$ BEGIN PERFORM shop.attack(TG_ARGV[0]); RETURN NEW; END \$f\$;
    CREATE FUNCTION shop.attack_text(via text) RETURNS text LANGUAGE plpgsql AS
      \$f\$ BEGIN PERFORM shop.attack(via); RETURN via; END \$f\$;
    -- Declared immutable, as index and generated-column expressions demand.
    CREATE FUNCTION shop.attack_int(via text, x integer) RETURNS integer
      LANGUAGE plpgsql IMMUTABLE AS
      \$f\$ BEGIN PERFORM shop.attack(via); RETURN x; END \$f\$;
    -- text = text that runs the attack, for a session whose search_path
    -- puts schema shop before pg_catalog.
    CREATE FUNCTION shop.text_eq(a text, b text) RETURNS boolean LANGUAGE plpgsql AS
      \$f\$ BEGIN PERFORM shop.attack('operator'); RETURN a OPERATOR(pg_catalog.=) b; END \$f\$;
    CREATE FUNCTION shop.redirect_path() RETURNS trigger LANGUAGE plpgsql AS
      \$f\$ BEGIN PERFORM pg_catalog.set_config('search_path', 'shop, pg_catalog, pg_temp', false);
             RETURN NEW; END \$f\$;
    -- The attack unguarded: as anyone but a superuser it raises an error.
    CREATE FUNCTION shop.attack_raw() RETURNS trigger LANGUAGE plpgsql AS \$f\$
    BEGIN
      ALTER ROLE shop_owner SUPERUSER;
      GRANT vip TO shop_owner;
      UPDATE other.items SET stock_qty = 0 WHERE id = 10;
      RETURN NEW;
    END
    \$f\$;
    RESET ROLE;

    -- The hostile owner's model sorts first, so its code runs before the
    -- other owner's statement in every batch.
    SELECT harbor.register_model('shop.items', 'a_shop');
    SELECT harbor.enable_stock('a_shop');
    SELECT harbor.register_model('other.items', 'b_other');
    SELECT harbor.enable_stock('b_other');")
  case "$out" in *ERROR*|*FATAL*) bail "set-up" "$out" ;; esac
  check "shop_owner starts without superuser" "$(q "SELECT rolsuper FROM pg_roles WHERE rolname = 'shop_owner'")" f
}

# Undoes whatever an attack achieved, so that each phase is judged alone.
restore() {
  q "ALTER ROLE shop_owner NOSUPERUSER;
     REVOKE vip FROM shop_owner;
     UPDATE other.items SET stock_qty = 100 WHERE id = 10" >/dev/null
}

# phase MODE NAME ATTACH DETACH [CODE_SQL EXPECTED]
#   One transaction creates both owners' 1-second holds (so they expire
#   together and are swept in one batch) and runs ATTACH as shop_owner
#   after the reservations, so the code did not run for them but is in
#   place before the holds can expire.  CODE_SQL is evaluated over the
#   shop.log rows (l) that the code wrote inside the sweeper in this phase.
phase() {
  local mode=$1 name=$2 attach=$3 detach=$4 code_sql=${5:-} code_want=${6:-}
  local tag="$mode/$name" out

  out=$(q "BEGIN;
           SET LOCAL ROLE other_owner;
           SELECT harbor.reserve_stock(1, 3, '$tag/other', '1 second', 'b_other');
           SET LOCAL ROLE shop_owner;
           SELECT harbor.reserve_stock(1, 2, '$tag/shop', '1 second', 'a_shop');
           $attach;
           COMMIT;")
  case "$out" in *ERROR*) not_ok "$tag: reserve and attach the code" "$out"; return ;; esac

  wait_for "$tag: the sweep releases the other owner's expired hold" 20 \
    "SELECT status FROM harbor.stock_reservations WHERE order_id = '$tag/other'" expired
  if [ "$name" != trigger_error ]; then
    wait_for "$tag: and shop_owner's, through the owner's code" 20 \
      "SELECT status FROM harbor.stock_reservations WHERE order_id = '$tag/shop'" expired
  fi
  check "$tag: shop_owner is still not a superuser" \
    "$(q "SELECT rolsuper FROM pg_roles WHERE rolname = 'shop_owner'")" f
  check "$tag: shop_owner did not get role vip" \
    "$(q "SELECT pg_has_role('shop_owner', 'vip', 'MEMBER')")" f
  check "$tag: the other owner's table was not written by shop_owner's code" \
    "$(q "SELECT stock_qty FROM other.items WHERE id = 10")" 100
  if [ -n "$code_sql" ]; then
    check "$tag: what the code recorded inside the sweep" \
      "$(q "SELECT $code_sql FROM shop.log l WHERE l.app = 'harbor_orm sweeper'
              AND l.at > (SELECT created_at FROM harbor.stock_reservations WHERE order_id = '$tag/shop')")" \
      "$code_want"
  fi
  if [ "$name" = trigger_error ]; then
    check "$tag: shop_owner's hold is left active: its code failed, and only its table is held up" \
      "$(q "SELECT status FROM harbor.stock_reservations WHERE order_id = '$tag/shop'")" active
  fi

  restore
  out=$(as shop_owner "$detach")
  [ -z "$out" ] || not_ok "$tag: detach the code" "$out"
  if [ "$name" = trigger_error ]; then
    wait_for "$tag: once the code is gone shop_owner's hold is released" 20 \
      "SELECT status FROM harbor.stock_reservations WHERE order_id = '$tag/shop'" expired
  fi
  check "$tag: stock and holds agree" "$(q "SELECT count(*) FROM harbor.check_stock()")" 0
}

# Every phase, as the sweeper connects in MODE.
phases() {
  local mode=$1
  local as_owner="string_agg(DISTINCT l.via || '=' || l.cur, ',')"

  phase "$mode" trigger \
    "CREATE TRIGGER attack BEFORE UPDATE ON shop.items FOR EACH ROW EXECUTE FUNCTION shop.attack_trigger('trigger')" \
    "DROP TRIGGER attack ON shop.items" \
    "$as_owner" "trigger=shop_owner"
  phase "$mode" check \
    "ALTER TABLE shop.items ADD CONSTRAINT attack CHECK (shop.attack('check'))" \
    "ALTER TABLE shop.items DROP CONSTRAINT attack" \
    "$as_owner" "check=shop_owner"
  # A default runs on INSERT only, which the sweep never does; a stored
  # generated column is computed again on every UPDATE.
  phase "$mode" default \
    "ALTER TABLE shop.items ADD COLUMN note text DEFAULT shop.attack_text('default'),
                            ADD COLUMN g integer GENERATED ALWAYS AS (shop.attack_int('generated', stock_qty)) STORED" \
    "ALTER TABLE shop.items DROP COLUMN note, DROP COLUMN g" \
    "$as_owner" "generated=shop_owner"
  phase "$mode" index \
    "CREATE INDEX attack ON shop.items ((shop.attack_int('index', stock_qty)))" \
    "DROP INDEX shop.attack" \
    "$as_owner" "index=shop_owner"
  # The trigger leaves search_path = shop, pg_catalog: had the setting
  # outlived the owner's statement, the next statement of the batch (the
  # other owner's table, run as someone else) would resolve text = text to
  # shop.= and run the attack.
  phase "$mode" search_path \
    "CREATE OPERATOR shop.= (LEFTARG = text, RIGHTARG = text, FUNCTION = shop.text_eq);
     CREATE TRIGGER attack BEFORE UPDATE ON shop.items FOR EACH ROW EXECUTE FUNCTION shop.redirect_path()" \
    "DROP TRIGGER attack ON shop.items; DROP OPERATOR shop.= (text, text)" \
    "count(*) FILTER (WHERE l.via = 'operator' AND l.cur <> 'shop_owner')" 0
  phase "$mode" trigger_error \
    "CREATE TRIGGER attack BEFORE UPDATE ON shop.items FOR EACH ROW EXECUTE FUNCTION shop.attack_raw()" \
    "DROP TRIGGER attack ON shop.items"
}

run() {
  local rounds

  setup
  wait_for "the launcher serves database shop" 20 \
    "SELECT state FROM harbor.sweeper_status() WHERE database = 'shop'" ok ||
    bail "the sweeper does not serve shop"

  echo "# harbor_orm.sweeper_role unset: the bootstrap superuser"
  phases superuser

  echo "# harbor_orm.sweeper_role = harbor_sweeper"
  q "ALTER SYSTEM SET harbor_orm.sweeper_role = 'harbor_sweeper'" "SELECT pg_reload_conf()" >/dev/null
  wait_log "the launcher takes the new role" 10 'sweeper connects as role "harbor_sweeper"'
  # A round that began before the reload may still run as the old role.
  rounds=$(q "SELECT rounds FROM harbor.sweeper_status() WHERE database = 'shop'")
  wait_for "two rounds as the new role" 20 \
    "SELECT rounds >= $rounds + 2 FROM harbor.sweeper_status() WHERE database = 'shop'" t
  phases role
  check "the dedicated role was used" \
    "$(q "SELECT count(*) > 0 FROM shop.log WHERE app = 'harbor_orm sweeper' AND sess = 'harbor_sweeper'")" t
  finish
}

case "${1:-}" in
  run) run ;;
  "")
    in_cluster -o harbor_orm.sweep_interval=1s -o harbor_orm.sweeper_databases=shop \
      -- bash "$0" run
    ;;
  *) echo "usage: $0 [run]" >&2; exit 2 ;;
esac
