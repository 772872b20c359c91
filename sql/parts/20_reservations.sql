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
