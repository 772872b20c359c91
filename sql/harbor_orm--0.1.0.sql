-- harbor_orm 0.1.0 install script, as released.  Never edited: every later change to an SQL object goes into an upgrade script harbor_orm--A--B.sql.
\echo Use "CREATE EXTENSION harbor_orm" to load this file. \quit

-- ---- sql/parts/10_registry.sql ----
-- =====================================================================
-- Mapped-model registry (src/registry.c)
-- =====================================================================

-- One row per mapped table.  Column names, not attribute numbers, so that a
-- dump restored elsewhere still lines up; regclass is dumped as a name.
CREATE TABLE harbor.model (
    name          text        PRIMARY KEY CHECK (name <> '' AND name !~ '[.\s]'),
    relation      regclass    NOT NULL UNIQUE,
    primary_key   text[]      NOT NULL CHECK (cardinality(primary_key) > 0),
    columns       text[]      NOT NULL,
    column_types  regtype[]   NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    refreshed_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- Relationships: discovered from foreign keys (explicit = false, rebuilt on
-- every registry change) or declared with register_relationship (explicit).
-- A discovered name that two foreign keys would both give is kept once per
-- candidate with ambiguous = true, so that its use can list the candidates.
CREATE TABLE harbor.relationship (
    id                       integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model                    text    NOT NULL REFERENCES harbor.model (name)
                                     ON UPDATE CASCADE ON DELETE CASCADE,
    name                     text    NOT NULL CHECK (name <> '' AND name !~ '[.\s]'),
    kind                     text    NOT NULL CHECK (kind IN ('many_to_one', 'one_to_many',
                                                              'one_to_one', 'many_to_many')),
    target                   text    NOT NULL REFERENCES harbor.model (name)
                                     ON UPDATE CASCADE ON DELETE CASCADE,
    local_columns            text[]  NOT NULL,
    remote_columns           text[]  NOT NULL,
    secondary                regclass,
    secondary_local_columns  text[],
    secondary_remote_columns text[],
    constraint_name          text,
    explicit                 boolean NOT NULL DEFAULT false,
    ambiguous                boolean NOT NULL DEFAULT false,
    CHECK (kind = 'many_to_many' OR cardinality(local_columns) = cardinality(remote_columns)),
    CHECK ((kind = 'many_to_many') = (secondary IS NOT NULL)),
    CHECK (NOT (explicit AND ambiguous))
);
CREATE UNIQUE INDEX relationship_model_name_key
    ON harbor.relationship (model, name) WHERE NOT ambiguous;
CREATE INDEX relationship_target_idx ON harbor.relationship (target);

SELECT pg_catalog.pg_extension_config_dump('harbor.model', '');
SELECT pg_catalog.pg_extension_config_dump('harbor.relationship', '');
SELECT pg_catalog.pg_extension_config_dump('harbor.relationship_id_seq', '');

-- Backends cache the registry; any change to these tables invalidates it.
CREATE FUNCTION harbor._registry_changed() RETURNS trigger
    LANGUAGE c
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_registry_changed';
-- Row triggers, so that a statement that changes nothing invalidates nothing.
CREATE TRIGGER model_changed AFTER INSERT OR UPDATE OR DELETE
    ON harbor.model FOR EACH ROW EXECUTE FUNCTION harbor._registry_changed();
CREATE TRIGGER model_truncated AFTER TRUNCATE
    ON harbor.model FOR EACH STATEMENT EXECUTE FUNCTION harbor._registry_changed();
CREATE TRIGGER relationship_changed AFTER INSERT OR UPDATE OR DELETE
    ON harbor.relationship FOR EACH ROW EXECUTE FUNCTION harbor._registry_changed();
CREATE TRIGGER relationship_truncated AFTER TRUNCATE
    ON harbor.relationship FOR EACH STATEMENT EXECUTE FUNCTION harbor._registry_changed();

CREATE FUNCTION harbor.register_model(relation regclass, name text DEFAULT NULL)
    RETURNS text
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_register_model';
COMMENT ON FUNCTION harbor.register_model(regclass, text) IS
    'register a table with a primary key as a mapped model; returns the model name';

CREATE FUNCTION harbor.unregister_model(name text)
    RETURNS void
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_unregister_model';

CREATE FUNCTION harbor.reflect(schema name DEFAULT 'public')
    RETURNS integer
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_reflect';
COMMENT ON FUNCTION harbor.reflect(name) IS
    'register every table with a primary key in a schema; returns how many were registered or refreshed';

CREATE FUNCTION harbor.register_relationship(model text, name text, target text,
                                             foreign_key text[] DEFAULT NULL,
                                             secondary regclass DEFAULT NULL,
                                             kind text DEFAULT NULL)
    RETURNS void
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_register_relationship';
COMMENT ON FUNCTION harbor.register_relationship(text, text, text, text[], regclass, text) IS
    'declare a relationship explicitly, overriding discovery under that name';

CREATE FUNCTION harbor.unregister_relationship(model text, name text)
    RETURNS boolean
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_unregister_relationship';

CREATE FUNCTION harbor.describe(model text)
    RETURNS jsonb
    LANGUAGE c STABLE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_describe';

CREATE FUNCTION harbor.check_models()
    RETURNS TABLE (model text, problem text)
    LANGUAGE c STABLE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_check_models';
COMMENT ON FUNCTION harbor.check_models() IS
    'every difference between the registry and the live catalog; empty when in step';

CREATE VIEW harbor.models AS
    SELECT m.name, m.relation, m.primary_key, m.columns, m.column_types,
           m.registered_at, m.refreshed_at
      FROM harbor.model m;

CREATE VIEW harbor.relationships AS
    SELECT r.model, r.name, r.kind, r.target, r.local_columns, r.remote_columns,
           r.secondary, r.secondary_local_columns, r.secondary_remote_columns,
           r.constraint_name, r.explicit, r.ambiguous
      FROM harbor.relationship r;

-- DDL stays in step: event triggers refresh or remove models.  They run as
-- the extension owner (SECURITY DEFINER) because the user running the DDL
-- need not have write access to the registry; they only re-read the catalog.
CREATE FUNCTION harbor._on_ddl_end() RETURNS event_trigger
    LANGUAGE c SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_on_ddl_end';
CREATE FUNCTION harbor._on_sql_drop() RETURNS event_trigger
    LANGUAGE c SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_on_sql_drop';
REVOKE ALL ON FUNCTION harbor._on_ddl_end() FROM PUBLIC;
REVOKE ALL ON FUNCTION harbor._on_sql_drop() FROM PUBLIC;
REVOKE ALL ON FUNCTION harbor._registry_changed() FROM PUBLIC;

CREATE EVENT TRIGGER harbor_ddl_end ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'CREATE INDEX', 'DROP INDEX', 'ALTER INDEX')
    EXECUTE FUNCTION harbor._on_ddl_end();
CREATE EVENT TRIGGER harbor_sql_drop ON sql_drop
    EXECUTE FUNCTION harbor._on_sql_drop();

GRANT USAGE ON SCHEMA harbor TO PUBLIC;
-- The registry is metadata every user of the models reads (the loader does).
GRANT SELECT ON harbor.model, harbor.relationship, harbor.models, harbor.relationships TO PUBLIC;

-- ---- sql/parts/20_reservations.sql ----
-- =====================================================================
-- Stock reservations with row locking (src/reservations.c)
-- =====================================================================

-- Models that keep stock: which integer column of the model's table holds
-- the quantity on hand.  The model's primary key (one integer column) is
-- the item id.
CREATE TABLE harbor.stock_model (
    model        text PRIMARY KEY REFERENCES harbor.model (name)
                      ON UPDATE CASCADE ON DELETE CASCADE,
    stock_column name NOT NULL
);

-- One row per hold.  A hold is 'active' until it is confirmed (the stock
-- stays taken), released or expired (the stock goes back); closed holds
-- carry closed_at and are deleted once harbor_orm.reservation_retention
-- has passed.
CREATE TABLE harbor.stock_reservations (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model      text        NOT NULL,
    item_id    bigint      NOT NULL,
    order_id   text        NOT NULL CHECK (order_id <> ''),
    qty        integer     NOT NULL CHECK (qty > 0),
    status     text        NOT NULL DEFAULT 'active'
                           CHECK (status IN ('active', 'confirmed', 'released', 'expired')),
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    expires_at timestamptz NOT NULL,
    closed_at  timestamptz
);
-- At most one active hold per order and item; also finds an item's holds.
CREATE UNIQUE INDEX stock_reservations_active_key
    ON harbor.stock_reservations (model, item_id, order_id) WHERE status = 'active';
-- The sweeps take the oldest expired holds first.
CREATE INDEX stock_reservations_expires_idx
    ON harbor.stock_reservations (expires_at) WHERE status = 'active';
-- confirm, release and extend work by order.
CREATE INDEX stock_reservations_order_idx
    ON harbor.stock_reservations (order_id);
-- stock_status() sums an item's confirmed holds.  Partial, so that a sweep
-- marking holds expired does not pay for it.
CREATE INDEX stock_reservations_confirmed_idx
    ON harbor.stock_reservations (model, item_id) WHERE status = 'confirmed';

-- The purge deletes closed holds past the retention, oldest first; without
-- this index every sweep round read all the closed holds to find none.
CREATE INDEX stock_reservations_closed_idx
    ON harbor.stock_reservations (closed_at) WHERE status <> 'active';

SELECT pg_catalog.pg_extension_config_dump('harbor.stock_model', '');
SELECT pg_catalog.pg_extension_config_dump('harbor.stock_reservations', '');
SELECT pg_catalog.pg_extension_config_dump('harbor.stock_reservations_id_seq', '');

-- Backends cache the stock models and their prepared statements.
CREATE FUNCTION harbor._stock_model_changed() RETURNS trigger
    LANGUAGE c
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_stock_model_changed';
REVOKE ALL ON FUNCTION harbor._stock_model_changed() FROM PUBLIC;
CREATE TRIGGER stock_model_changed AFTER INSERT OR UPDATE OR DELETE
    ON harbor.stock_model FOR EACH ROW EXECUTE FUNCTION harbor._stock_model_changed();
CREATE TRIGGER stock_model_truncated AFTER TRUNCATE
    ON harbor.stock_model FOR EACH STATEMENT EXECUTE FUNCTION harbor._stock_model_changed();

CREATE FUNCTION harbor.enable_stock(model text, stock_column name DEFAULT 'stock_qty')
    RETURNS void
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_enable_stock';
COMMENT ON FUNCTION harbor.enable_stock(text, name) IS
    'mark a registered model as stock-keeping: its integer primary key is the item id, stock_column the quantity on hand';

CREATE FUNCTION harbor.reserve_stock(item_id bigint, qty integer, order_id text,
                                     ttl interval DEFAULT '15 minutes',
                                     model text DEFAULT NULL)
    RETURNS harbor.stock_reservations
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_reserve_stock';
COMMENT ON FUNCTION harbor.reserve_stock(bigint, integer, text, interval, text) IS
    'take qty of an item''s stock for an order until now() + ttl; idempotent per order and item';

CREATE FUNCTION harbor.reserve_many(order_id text, items jsonb,
                                    ttl interval DEFAULT '15 minutes',
                                    model text DEFAULT NULL)
    RETURNS SETOF harbor.stock_reservations
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_reserve_many';
COMMENT ON FUNCTION harbor.reserve_many(text, jsonb, interval, text) IS
    'reserve every line of [{"item_id": n, "qty": n}, ...] for an order, or none';

CREATE FUNCTION harbor.confirm_reservation(order_id text)
    RETURNS integer
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_confirm_reservation';

CREATE FUNCTION harbor.release_reservation(order_id text, item_id bigint DEFAULT NULL)
    RETURNS integer
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_release_reservation';

CREATE FUNCTION harbor.extend_reservation(order_id text, ttl interval)
    RETURNS integer
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_extend_reservation';

CREATE FUNCTION harbor.sweep_expired(batch_size integer DEFAULT 1000)
    RETURNS bigint
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_sweep_expired';
COMMENT ON FUNCTION harbor.sweep_expired(integer) IS
    'release every expired hold and delete closed holds past the retention; returns how many holds were released';

-- The units of work of the background sweeper: each call is one
-- transaction's worth.
CREATE FUNCTION harbor._sweep_batch(batch_size integer)
    RETURNS bigint
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_sweep_batch';
COMMENT ON FUNCTION harbor._sweep_batch(integer) IS
    'release at most batch_size expired holds, skipping locked rows; returns how many';

CREATE FUNCTION harbor._purge_closed(batch_size integer)
    RETURNS bigint
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_purge_closed';
COMMENT ON FUNCTION harbor._purge_closed(integer) IS
    'delete at most batch_size holds closed longer ago than harbor_orm.reservation_retention; returns how many';

CREATE FUNCTION harbor.stock_status(item_id bigint, model text DEFAULT NULL)
    RETURNS TABLE (on_hand bigint, reserved bigint, confirmed bigint, available bigint)
    LANGUAGE c STABLE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_stock_status';
COMMENT ON FUNCTION harbor.stock_status(bigint, text) IS
    'available = the stock column, reserved = active holds, on_hand = available + reserved, confirmed = confirmed holds still retained';

CREATE FUNCTION harbor.check_stock()
    RETURNS TABLE (model text, item_id bigint, problem text)
    LANGUAGE c STABLE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_check_stock';
COMMENT ON FUNCTION harbor.check_stock() IS
    'every inconsistency between stock and holds; empty on a healthy database';

CREATE VIEW harbor.stock_models AS
    SELECT s.model, m.relation, m.primary_key[1] AS item_column, s.stock_column
      FROM harbor.stock_model s JOIN harbor.model m ON m.name = s.model;

GRANT SELECT ON harbor.stock_model, harbor.stock_models TO PUBLIC;

-- ---- sql/parts/30_sweeper.sql ----
-- =====================================================================
-- Expiry sweeper (src/sweeper.c, src/sweeper_status.c)
--
-- The sweeping itself is harbor._sweep_batch() and harbor._purge_closed()
-- (reservations part); these functions only start, stop and watch the
-- background workers that call them.
-- =====================================================================

CREATE FUNCTION harbor.sweeper_status()
    RETURNS TABLE (database name, mode text, pid integer, launcher_pid integer,
                   state text, last_run_start timestamptz, last_run_end timestamptz,
                   released_last bigint, purged_last bigint,
                   released_total bigint, purged_total bigint,
                   rounds bigint, errors bigint,
                   last_error text, last_error_at timestamptz)
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_sweeper_status';
COMMENT ON FUNCTION harbor.sweeper_status() IS
    'the expiry sweeper of every database of the cluster: worker, last round, counts and last error';

CREATE VIEW harbor.sweepers AS
    SELECT s.database, s.mode, s.pid, s.launcher_pid, s.state,
           s.last_run_start, s.last_run_end, s.released_last, s.purged_last,
           s.released_total, s.purged_total, s.rounds, s.errors,
           s.last_error, s.last_error_at
      FROM harbor.sweeper_status() s;

CREATE FUNCTION harbor.start_sweeper()
    RETURNS integer
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_start_sweeper';
COMMENT ON FUNCTION harbor.start_sweeper() IS
    'start a background worker that sweeps this database, acting as the calling role; returns its pid';

CREATE FUNCTION harbor.stop_sweeper()
    RETURNS boolean
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_stop_sweeper';
COMMENT ON FUNCTION harbor.stop_sweeper() IS
    'stop the worker started by start_sweeper() in this database; false when none runs';

-- Starting a worker takes one of max_worker_processes slots, which parallel
-- query and other extensions share: superusers only, unless granted.
-- The status names databases and may carry error messages: monitoring
-- roles only, unless granted.
REVOKE ALL ON FUNCTION harbor.start_sweeper() FROM PUBLIC;
REVOKE ALL ON FUNCTION harbor.stop_sweeper() FROM PUBLIC;
REVOKE ALL ON FUNCTION harbor.sweeper_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION harbor.sweeper_status() TO pg_monitor;
GRANT SELECT ON harbor.sweepers TO pg_monitor;

-- ---- sql/parts/40_loader.sql ----
-- =====================================================================
-- Batched relation loading (src/loader.c)
-- =====================================================================
-- Run with the caller's privileges: every query they issue is subject to
-- the caller's SELECT privileges and row-level security policies.

CREATE FUNCTION harbor.load(model text, ids anyarray, include text[] DEFAULT '{}')
    RETURNS jsonb
    LANGUAGE c STABLE PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_load';
COMMENT ON FUNCTION harbor.load(text, anyarray, text[]) IS
    'rows of a model by primary key, in the order of ids, with the included relationships, as a JSON array';

CREATE FUNCTION harbor.get(model text, id anyelement, include text[] DEFAULT '{}')
    RETURNS jsonb
    LANGUAGE c STABLE PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_get';
COMMENT ON FUNCTION harbor.get(text, anyelement, text[]) IS
    'one row of a model by primary key with the included relationships, or NULL';

CREATE FUNCTION harbor.find(model text, filter jsonb DEFAULT '{}', include text[] DEFAULT '{}',
                            order_by text[] DEFAULT NULL, lim integer DEFAULT NULL,
                            offs integer DEFAULT 0)
    RETURNS jsonb
    LANGUAGE c STABLE PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_find';
COMMENT ON FUNCTION harbor.find(text, jsonb, text[], text[], integer, integer) IS
    'rows of a model matching a filter, ordered and limited, with the included relationships, as a JSON array';

CREATE FUNCTION harbor.last_load_stats()
    RETURNS jsonb
    LANGUAGE c VOLATILE PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_last_load_stats';
COMMENT ON FUNCTION harbor.last_load_stats() IS
    'queries, rows fetched and identity-map hits of the last load, get or find of this session, per path';


-- ---- sql/parts/50_notify.sql ----
-- =====================================================================
-- Commit-time change notifications (src/notify.c)
-- =====================================================================

-- Statement-level trigger behind every notifying model; its one argument
-- is the model name.  Anyone may fire it (it only queues NOTIFY payloads);
-- calling it outside a trigger is an error.
CREATE FUNCTION harbor._notify_changes() RETURNS trigger
    LANGUAGE c
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_notify_changes';

CREATE FUNCTION harbor.enable_change_notify(model text)
    RETURNS void
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_enable_change_notify';
COMMENT ON FUNCTION harbor.enable_change_notify(text) IS
    'after each committed INSERT/UPDATE/DELETE/TRUNCATE on the model, NOTIFY harbor_changes with {"model","op","ids"}';

CREATE FUNCTION harbor.disable_change_notify(model text)
    RETURNS void
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_disable_change_notify';
COMMENT ON FUNCTION harbor.disable_change_notify(text) IS
    'stop the change notifications of a model; does nothing if they are off';

-- Models whose changes are announced.
CREATE VIEW harbor.change_notify_models AS
    SELECT m.name AS model, m.relation
      FROM harbor.model m
     WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                    WHERE t.tgrelid = m.relation
                      AND t.tgname = 'harbor_notify_insert');
GRANT SELECT ON harbor.change_notify_models TO PUBLIC;
