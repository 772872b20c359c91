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
    SET search_path = pg_catalog, pg_temp
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
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_hold_creditable_sql';
COMMENT ON FUNCTION harbor._hold_creditable(regrole, oid, smallint) IS
    'whether created_by may have the sweeps give a hold''s stock back to the stock column of rel';

-- ---- sweeper ----

-- ---- loader ----

-- ---- notify ----
