-- harbor_orm 0.1.0 -> 0.2.0
--
-- A fresh CREATE EXTENSION harbor_orm runs the 0.1.0 install script and then
-- this one, so an upgraded database and a new one are the same by
-- construction.  Sections follow the capabilities.
\echo Use "ALTER EXTENSION harbor_orm UPDATE TO '0.2.0'" to load this file. \quit

-- ---- registry ----

-- ---- reservations ----

-- Every version of a hold records the role that wrote it (a trigger sets
-- it, whatever the writer supplied).  The sweeps give an expired hold's
-- stock back only when that role could have moved the stock itself, so
-- a hold written straight into the table moves no stock its writer could
-- not move.  NULL: written before 0.2.0.
ALTER TABLE harbor.stock_reservations ADD COLUMN created_by regrole;
COMMENT ON COLUMN harbor.stock_reservations.created_by IS
    'the role that last wrote the hold (set by a trigger); NULL for holds older than 0.2.0';

CREATE FUNCTION harbor._stamp_hold() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'harbor_stamp_hold';
REVOKE ALL ON FUNCTION harbor._stamp_hold() FROM PUBLIC;
CREATE TRIGGER stamp_hold BEFORE INSERT OR UPDATE
    ON harbor.stock_reservations FOR EACH ROW EXECUTE FUNCTION harbor._stamp_hold();

-- The sweeps take expired holds in (expires_at, id) order, each batch after
-- the last hold the previous one looked at: the index serves that order
-- and the row comparison directly, however many holds share one expiry.
DROP INDEX harbor.stock_reservations_expires_idx;
CREATE INDEX stock_reservations_expires_idx
    ON harbor.stock_reservations (expires_at, id) WHERE status = 'active';

-- Whether the sweeps may give back the stock of a hold written by
-- created_by to the stock column (attribute number) of rel.
CREATE FUNCTION harbor._hold_creditable(created_by regrole, rel oid, stock_attnum smallint)
    RETURNS boolean
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'harbor_hold_creditable_sql';
COMMENT ON FUNCTION harbor._hold_creditable(regrole, oid, smallint) IS
    'whether created_by may have the sweeps give a hold''s stock back to the stock column of rel';

-- The reservation functions run with the caller's search_path: every
-- statement they run names its tables, operators, functions and types
-- schema-qualified (OPERATOR(pg_catalog.=), pg_catalog.now(), harbor.*), so
-- no object a user creates can stand in for one of ours, and a call no
-- longer pays for setting and restoring search_path.  _stamp_hold and
-- _hold_creditable (above) run no SQL.  SECURITY DEFINER functions keep
-- their fixed search_path.
ALTER FUNCTION harbor.reserve_stock(bigint, integer, text, interval, text) RESET search_path;
ALTER FUNCTION harbor.reserve_many(text, jsonb, interval, text) RESET search_path;
ALTER FUNCTION harbor.confirm_reservation(text) RESET search_path;
ALTER FUNCTION harbor.release_reservation(text, bigint) RESET search_path;
ALTER FUNCTION harbor.extend_reservation(text, interval) RESET search_path;

-- Stock buckets (src/buckets.c, docs/reservations.md "Stock buckets"): a
-- hot item's available stock spread over rows of harbor.stock_bucket, so
-- that concurrent checkouts of it do not queue on one row lock.  While an
-- item is split its available stock is its stock column plus its buckets;
-- stock column + buckets + active + confirmed holds stays constant.  A hold
-- records the bucket it took from (NULL: the stock column); release and
-- expiry give back there, or to the stock column if the bucket is gone.
ALTER TABLE harbor.stock_reservations ADD COLUMN bucket integer;
COMMENT ON COLUMN harbor.stock_reservations.bucket IS
    'the stock bucket the hold took from (harbor.split_stock); NULL: the item''s stock column';

-- Owned by the extension's owner; written only by harbor's functions, as
-- that owner, after they checked that the caller may update the stock
-- column (and sees the item under its row-level security).
CREATE TABLE harbor.stock_bucket (
    model   text    NOT NULL,
    item_id bigint  NOT NULL,
    bucket  integer NOT NULL CHECK (bucket >= 0),
    stock   bigint  NOT NULL CHECK (stock >= 0),
    PRIMARY KEY (model, item_id, bucket)
);
COMMENT ON TABLE harbor.stock_bucket IS
    'the available stock of split items, one row per bucket (harbor.split_stock)';
SELECT pg_catalog.pg_extension_config_dump('harbor.stock_bucket', '');
REVOKE ALL ON harbor.stock_bucket FROM PUBLIC;

CREATE VIEW harbor.stock_buckets AS
    SELECT b.model, b.item_id, b.bucket, b.stock
      FROM harbor.stock_bucket b;
COMMENT ON VIEW harbor.stock_buckets IS
    'each split item''s buckets and the stock in each';
GRANT SELECT ON harbor.stock_buckets TO PUBLIC;

CREATE FUNCTION harbor.split_stock(model text, item_id bigint, buckets integer DEFAULT 16)
    RETURNS integer
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_split_stock';
COMMENT ON FUNCTION harbor.split_stock(text, bigint, integer) IS
    'spread an item''s available stock (stock column and buckets) evenly over that many buckets; again to rebalance';

CREATE FUNCTION harbor.merge_stock(model text, item_id bigint)
    RETURNS bigint
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_merge_stock';
COMMENT ON FUNCTION harbor.merge_stock(text, bigint) IS
    'fold a split item''s buckets back into its stock column; returns the units moved';

CREATE FUNCTION harbor.stock_bucket_counters()
    RETURNS TABLE (path text, calls bigint)
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_stock_bucket_counters';
COMMENT ON FUNCTION harbor.stock_bucket_counters() IS
    'how often checkouts of split items took each path since the server started (needs shared_preload_libraries)';

-- ---- sweeper ----

-- ---- loader ----

-- load, get and find run with the caller's search_path: every statement
-- they build names its operators, functions and types by schema
-- (OPERATOR(pg_catalog.=), pg_catalog types) and its tables by schema, so
-- the path cannot change what they read, and dropping the SET clause saves
-- each call the GUC save/restore, search path recomputation and plan
-- revalidation that fmgr does around a function with one.
ALTER FUNCTION harbor.load(text, anyarray, text[]) RESET search_path;
ALTER FUNCTION harbor.get(text, anyelement, text[]) RESET search_path;
ALTER FUNCTION harbor.find(text, jsonb, text[], text[], integer, integer) RESET search_path;

-- load(), get() and find() as JSON text written directly, for callers that
-- pass it on as it is (to an HTTP client): no jsonb is built, and none is
-- printed.  The text is the one the jsonb function's result::text gives.
CREATE FUNCTION harbor.load_text(model text, ids anyarray, include text[] DEFAULT '{}')
    RETURNS text
    LANGUAGE c STABLE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'harbor_load_text';
COMMENT ON FUNCTION harbor.load_text(text, anyarray, text[]) IS
    'harbor.load as JSON text: the same rows, order and keys, the text load()::text gives';
CREATE FUNCTION harbor.get_text(model text, id anyelement, include text[] DEFAULT '{}')
    RETURNS text
    LANGUAGE c STABLE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'harbor_get_text';
COMMENT ON FUNCTION harbor.get_text(text, anyelement, text[]) IS
    'harbor.get as JSON text: the text get()::text gives, or NULL';
CREATE FUNCTION harbor.find_text(model text, filter jsonb DEFAULT '{}', include text[] DEFAULT '{}',
                                 order_by text[] DEFAULT NULL, lim integer DEFAULT NULL,
                                 offs integer DEFAULT 0)
    RETURNS text
    LANGUAGE c STABLE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'harbor_find_text';
COMMENT ON FUNCTION harbor.find_text(text, jsonb, text[], text[], integer, integer) IS
    'harbor.find as JSON text: the text find()::text gives';

-- ---- notify ----

-- What a change notification carries, and on which channel, is the choice of
-- the one who enables it (docs/notify.md): PostgreSQL has no privilege on
-- LISTEN, so whatever is sent reaches every role that can connect.  The
-- default payload carries no keys; payload => 'keys' needs ownership of the
-- table or SELECT on its key columns without row-level security.  The
-- choice is kept as the triggers' arguments (model, channel, payload).
-- CREATE OR REPLACE cannot add parameters (it would make an overload that
-- one-argument calls find ambiguous), hence DROP + CREATE; the C function
-- still accepts the one-argument call of the 0.1.0 declaration.
DROP FUNCTION harbor.enable_change_notify(text);
CREATE FUNCTION harbor.enable_change_notify(model text,
                                            channel text DEFAULT 'harbor_changes',
                                            payload text DEFAULT 'count')
    RETURNS void
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_enable_change_notify';
COMMENT ON FUNCTION harbor.enable_change_notify(text, text, text) IS
    'after each committed INSERT/UPDATE/DELETE/TRUNCATE on the model, NOTIFY channel with {"model","op"} and, by payload: nothing more (none), "count" (count, the default) or the primary keys "ids" (keys); every role that can connect may LISTEN';

-- Models whose changes are announced, with the channel and payload of each.
-- pg_trigger.tgargs holds the arguments as NUL-terminated strings; triggers
-- made by 0.1.0 have only the model and send counts on harbor_changes.
CREATE OR REPLACE VIEW harbor.change_notify_models AS
    SELECT m.name AS model, m.relation,
           CASE WHEN t.tgnargs = 3 THEN
               pg_catalog.convert_from(pg_catalog.substr(a.rest, 1, a.sep - 1),
                                       pg_catalog.getdatabaseencoding())
           ELSE 'harbor_changes' END AS channel,
           CASE WHEN t.tgnargs = 3 THEN
               pg_catalog.convert_from(pg_catalog.substr(a.last, 1,
                                           pg_catalog.position(a.last, '\x00'::bytea) - 1),
                                       pg_catalog.getdatabaseencoding())
           ELSE 'count' END AS payload
      FROM harbor.model m
      JOIN pg_catalog.pg_trigger t
        ON t.tgrelid = m.relation AND t.tgname = 'harbor_notify_insert'
     CROSS JOIN LATERAL (
           SELECT r.rest, s.sep, pg_catalog.substr(r.rest, s.sep + 1) AS last
             FROM (SELECT pg_catalog.substr(t.tgargs,
                          pg_catalog.position(t.tgargs, '\x00'::bytea) + 1) AS rest) r,
                  LATERAL (SELECT pg_catalog.position(r.rest, '\x00'::bytea) AS sep) s
           ) a;

-- Warn whoever upgrades which models change what they send (a NOTICE would
-- not be shown: extension scripts run with client_min_messages = warning).
-- Their triggers were made by 0.1.0, which sent primary keys to every
-- listener; they now send counts until enabled again with an explicit
-- payload.
DO $$
DECLARE
    models text;
BEGIN
    SELECT pg_catalog.string_agg(pg_catalog.quote_literal(m.name), ', ' ORDER BY m.name)
      INTO models
      FROM harbor.model m
      JOIN pg_catalog.pg_trigger t
        ON t.tgrelid = m.relation AND t.tgname = 'harbor_notify_insert'
     WHERE t.tgnargs = 1;
    IF models IS NOT NULL THEN
        RAISE WARNING 'change notifications of models % no longer carry primary keys', models
            USING DETAIL = 'Any role that can connect can LISTEN to them; they now send {"model", "op", "count"}.',
                  HINT = 'If every role that can connect may see the keys, the table''s owner can send them again with harbor.enable_change_notify(model, payload => ''keys'').';
    END IF;
END
$$;
