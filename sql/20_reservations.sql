-- Stock reservations: enable_stock, reserve_stock, reserve_many, confirm,
-- release, extend, sweeps, stock_status, check_stock and every error path.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS harbor_orm;
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE SCHEMA rsv;
CREATE TABLE rsv.variants (
    id        integer PRIMARY KEY,
    sku       text NOT NULL,
    stock_qty integer NOT NULL CHECK (stock_qty >= 0)
);
INSERT INTO rsv.variants VALUES (1, 'MUG-LTD', 5), (2, 'MUG-STD', 10), (3, 'TEE-S', 3), (4, 'TEE-M', 0);
CREATE TABLE rsv.order_lines (
    order_id   text,
    variant_id integer REFERENCES rsv.variants (id),
    PRIMARY KEY (order_id, variant_id)
);
-- a second stock model, without a CHECK, so that check_stock has work
CREATE TABLE rsv.bins (bin bigint PRIMARY KEY, units smallint);
INSERT INTO rsv.bins VALUES (10, 4), (11, 2);
-- models that cannot keep stock
CREATE TABLE rsv.pairs (a int, b int, qty int, PRIMARY KEY (a, b));
CREATE TABLE rsv.codes (code text PRIMARY KEY, qty int, label text);
SELECT harbor.register_model(t::regclass)
  FROM unnest(ARRAY['rsv.variants', 'rsv.order_lines', 'rsv.bins', 'rsv.pairs', 'rsv.codes']) t;

-- A view over the state of every item, used after each step.
CREATE VIEW rsv.state AS
SELECT v.id, v.stock_qty,
       COALESCE(sum(r.qty) FILTER (WHERE r.status = 'active'), 0) AS active,
       COALESCE(sum(r.qty) FILTER (WHERE r.status = 'confirmed'), 0) AS confirmed,
       v.stock_qty + COALESCE(sum(r.qty) FILTER (WHERE r.status IN ('active', 'confirmed')), 0) AS total
  FROM rsv.variants v
  LEFT JOIN harbor.stock_reservations r ON r.model = 'variants' AND r.item_id = v.id
 GROUP BY v.id ORDER BY v.id;
CREATE VIEW rsv.holds AS
SELECT order_id, model, item_id, qty, status, closed_at IS NOT NULL AS closed
  FROM harbor.stock_reservations ORDER BY id;

-- ---------------------------------------------------------------- enable_stock
-- before any model keeps stock
SELECT harbor.reserve_stock(1, 1, 'early');
SELECT harbor.enable_stock('variants');
SELECT harbor.enable_stock('bins', 'units');
SELECT * FROM harbor.stock_models ORDER BY model;
-- errors
SELECT harbor.enable_stock('nope');
SELECT harbor.enable_stock('pairs', 'qty');
SELECT harbor.enable_stock('codes', 'qty');
SELECT harbor.enable_stock('variants', 'missing');
SELECT harbor.enable_stock('variants', 'sku');
SELECT harbor.enable_stock('variants', 'id');
SELECT harbor.enable_stock(NULL);
SELECT harbor.enable_stock('variants', NULL);
-- enabling again is harmless
SELECT harbor.enable_stock('variants', 'stock_qty');

-- ---------------------------------------------------------------- reserve_stock
SELECT order_id, model, item_id, qty, status, expires_at - created_at AS ttl, closed_at
  FROM harbor.reserve_stock(1, 2, 'A', model => 'variants');
SELECT * FROM rsv.state WHERE id = 1;
-- a retry is idempotent; the new qty replaces the old, only the difference moves
SELECT qty, status FROM harbor.reserve_stock(1, 2, 'A', '1 hour', 'variants');
SELECT qty, status FROM harbor.reserve_stock(1, 3, 'A', '1 hour', 'variants');
SELECT * FROM rsv.state WHERE id = 1;
SELECT qty, expires_at - created_at > '50 minutes' AS renewed
  FROM harbor.reserve_stock(1, 1, 'A', '1 hour', 'variants');
SELECT * FROM rsv.state WHERE id = 1;
SELECT count(*) AS active_holds_of_A FROM harbor.stock_reservations WHERE order_id = 'A' AND status = 'active';
-- the model may be omitted only when one model keeps stock
SELECT harbor.reserve_stock(1, 1, 'B');
-- the other model
SELECT order_id, model, item_id, qty FROM harbor.reserve_stock(10, 3, 'B', model => 'bins');
SELECT * FROM harbor.stock_status(10, 'bins');

-- errors leave everything as it was
SELECT harbor.reserve_stock(1, 6, 'B', model => 'variants');     -- HB001
SELECT qty FROM harbor.reserve_stock(1, 5, 'A', model => 'variants');  -- A holds 1: 4 + 1 available
SELECT harbor.reserve_stock(99, 1, 'B', model => 'variants');    -- HB002
SELECT harbor.reserve_stock(1, 0, 'B', model => 'variants');
SELECT harbor.reserve_stock(1, -2, 'B', model => 'variants');
SELECT harbor.reserve_stock(1, 1, '', model => 'variants');
SELECT harbor.reserve_stock(1, 1, 'B', '0 seconds', 'variants');
SELECT harbor.reserve_stock(1, 1, 'B', '-5 minutes', 'variants');
SELECT harbor.reserve_stock(NULL, 1, 'B', model => 'variants');
SELECT harbor.reserve_stock(1, NULL, 'B', model => 'variants');
SELECT harbor.reserve_stock(1, 1, NULL, model => 'variants');
SELECT harbor.reserve_stock(1, 1, 'B', NULL, 'variants');
SELECT harbor.reserve_stock(1, 1, 'B', model => 'nope');
SELECT harbor.reserve_stock(1, 1, 'B', model => 'codes');
SELECT * FROM rsv.state;
SELECT * FROM rsv.holds;
-- A may take everything: its own hold counts as available to it
SELECT qty FROM harbor.reserve_stock(1, 5, 'A', model => 'variants');
SELECT * FROM rsv.state WHERE id = 1;
SELECT qty FROM harbor.reserve_stock(1, 1, 'A', model => 'variants');

-- expired holds of the item are reclaimed before a refusal
SELECT qty FROM harbor.reserve_stock(3, 3, 'C', model => 'variants');
SELECT harbor.reserve_stock(3, 1, 'D', model => 'variants');     -- HB001
UPDATE harbor.stock_reservations SET expires_at = now() - interval '1 second'
 WHERE order_id = 'C';
SELECT order_id, qty, status FROM harbor.reserve_stock(3, 2, 'D', model => 'variants');
SELECT order_id, item_id, qty, status, closed FROM rsv.holds WHERE item_id = 3;
SELECT * FROM rsv.state WHERE id = 3;
-- an expired hold of the same order, not yet swept, still holds its stock: renewed
UPDATE harbor.stock_reservations SET expires_at = now() - interval '1 second'
 WHERE order_id = 'D';
SELECT order_id, qty, status FROM harbor.reserve_stock(3, 3, 'D', model => 'variants');
SELECT order_id, item_id, qty, status, closed FROM rsv.holds WHERE item_id = 3;
SELECT * FROM rsv.state WHERE id = 3;
SELECT harbor.release_reservation('D');

-- ---------------------------------------------------------------- reserve_many
SELECT order_id, item_id, qty, status
  FROM harbor.reserve_many('E', '[{"item_id": 2, "qty": 2}, {"item_id": 1, "qty": 1}, {"item_id": 2, "qty": 1}]',
                           model => 'variants');
SELECT * FROM rsv.state;
-- all lines or none; the detail lists every short line
SELECT * FROM harbor.reserve_many('F', '[{"item_id": 2, "qty": 1}, {"item_id": 4, "qty": 1}, {"item_id": 3, "qty": 9}]',
                                  model => 'variants');
SELECT * FROM harbor.reserve_many('F', '[{"item_id": 2, "qty": 1}, {"item_id": 98, "qty": 1}]', model => 'variants');
SELECT * FROM rsv.state;
SELECT count(*) AS holds_of_F FROM harbor.stock_reservations WHERE order_id = 'F';
-- malformed items
SELECT * FROM harbor.reserve_many('F', '{"item_id": 2, "qty": 1}', model => 'variants');
SELECT * FROM harbor.reserve_many('F', '3', model => 'variants');
SELECT * FROM harbor.reserve_many('F', '[]', model => 'variants');
SELECT * FROM harbor.reserve_many('F', '[[2, 1]]', model => 'variants');
SELECT * FROM harbor.reserve_many('F', '[{"qty": 1}]', model => 'variants');
SELECT * FROM harbor.reserve_many('F', '[{"item_id": 2}]', model => 'variants');
SELECT * FROM harbor.reserve_many('F', '[{"item_id": "2", "qty": 1}]', model => 'variants');
SELECT * FROM harbor.reserve_many('F', '[{"item_id": 2, "qty": 1.5}]', model => 'variants');
SELECT * FROM harbor.reserve_many('F', '[{"item_id": 2, "qty": 0}]', model => 'variants');
SELECT * FROM harbor.reserve_many('F', '[{"item_id": 2, "qty": 1, "price": 3}]', model => 'variants');
SELECT * FROM harbor.reserve_many('F', '[{"item_id": 2, "qty": 2000000000}, {"item_id": 2, "qty": 2000000000}]', model => 'variants');
SELECT * FROM harbor.reserve_many('F', NULL, model => 'variants');
SELECT * FROM harbor.reserve_many('', '[{"item_id": 2, "qty": 1}]', model => 'variants');
SELECT * FROM harbor.reserve_many('F', '[{"item_id": 2, "qty": 1}]', '0', 'variants');
SELECT * FROM rsv.state;

-- ---------------------------------------------------------------- confirm
SELECT harbor.confirm_reservation('E');
SELECT harbor.confirm_reservation('E');   -- already confirmed: nothing more
SELECT * FROM rsv.state;
SELECT harbor.confirm_reservation('nobody');
SELECT harbor.confirm_reservation('');
SELECT harbor.confirm_reservation(NULL);
-- a hold past its expiry cannot be confirmed, swept or not
SELECT qty FROM harbor.reserve_stock(2, 1, 'G', model => 'variants');
SELECT qty FROM harbor.reserve_stock(3, 1, 'G', model => 'variants');
UPDATE harbor.stock_reservations SET expires_at = now() - interval '1 second'
 WHERE order_id = 'G' AND item_id = 3;
SELECT harbor.confirm_reservation('G');
SELECT order_id, item_id, qty, status FROM rsv.holds WHERE order_id = 'G';
SELECT harbor.sweep_expired();
SELECT harbor.confirm_reservation('G');
-- reserving the lost item again makes the order whole
SELECT qty FROM harbor.reserve_stock(3, 1, 'G', model => 'variants');
SELECT harbor.confirm_reservation('G');
-- released holds are not confirmed
SELECT qty FROM harbor.reserve_stock(2, 1, 'H', model => 'variants');
SELECT harbor.release_reservation('H');
SELECT harbor.confirm_reservation('H');
SELECT * FROM rsv.state;

-- ---------------------------------------------------------------- release
SELECT count(*) FROM harbor.reserve_many('I', '[{"item_id": 1, "qty": 1}, {"item_id": 2, "qty": 2}]', model => 'variants');
SELECT harbor.release_reservation('I', 2);
SELECT * FROM rsv.state WHERE id IN (1, 2);
SELECT harbor.release_reservation('I');
SELECT harbor.release_reservation('I');
SELECT harbor.release_reservation('nobody');
SELECT * FROM rsv.state WHERE id IN (1, 2);
SELECT harbor.release_reservation('');
SELECT harbor.release_reservation(NULL);

-- ---------------------------------------------------------------- extend
SELECT count(*) FROM harbor.reserve_many('J', '[{"item_id": 1, "qty": 1}, {"item_id": 2, "qty": 1}]', '1 minute', 'variants');
SELECT harbor.extend_reservation('J', '2 hours');
SELECT item_id, expires_at - now() > interval '1 hour' AS extended
  FROM harbor.stock_reservations WHERE order_id = 'J' ORDER BY item_id;
SELECT harbor.extend_reservation('nobody', '1 hour');
SELECT harbor.extend_reservation('J', '-1 hour');
SELECT harbor.extend_reservation('J', NULL);
SELECT harbor.extend_reservation(NULL, '1 hour');

-- ---------------------------------------------------------------- sweeps
UPDATE harbor.stock_reservations SET expires_at = now() - interval '1 minute'
 WHERE order_id IN ('J', 'B');
SELECT harbor._sweep_batch(1);
SELECT harbor._sweep_batch(10);
SELECT harbor._sweep_batch(10);
SELECT * FROM rsv.state WHERE id IN (1, 2);
SELECT * FROM harbor.stock_status(10, 'bins');
SELECT harbor._sweep_batch(0);
SELECT harbor._sweep_batch(NULL);
SELECT harbor.sweep_expired(0);
SELECT harbor.sweep_expired(NULL);
-- closed holds are deleted once the retention (7 days by default) has passed
SHOW harbor_orm.reservation_retention;
UPDATE harbor.stock_reservations SET closed_at = now() - interval '8 days'
 WHERE order_id IN ('J', 'I');
SELECT harbor._purge_closed(1);
SELECT harbor._purge_closed(100);
SELECT count(*) FROM harbor.stock_reservations WHERE order_id IN ('J', 'I');
SELECT harbor._purge_closed(-1);
UPDATE harbor.stock_reservations SET closed_at = now() - interval '8 days'
 WHERE order_id = 'H';
SELECT harbor.sweep_expired(1);
SELECT count(*) FROM harbor.stock_reservations WHERE order_id = 'H';

-- ---------------------------------------------------------------- stock_status
SELECT * FROM harbor.stock_status(1, 'variants');
SELECT * FROM harbor.stock_status(2, 'variants');
SELECT * FROM harbor.stock_status(99, 'variants');
SELECT * FROM harbor.stock_status(NULL, 'variants');
SELECT * FROM harbor.stock_status(1);

-- ---------------------------------------------------------------- check_stock
SELECT * FROM harbor.check_stock();
UPDATE rsv.bins SET units = -1 WHERE bin = 11;
INSERT INTO rsv.bins VALUES (12, NULL);
SELECT qty FROM harbor.reserve_stock(10, 1, 'K', model => 'bins');
DELETE FROM rsv.bins WHERE bin = 10;
UPDATE harbor.stock_reservations SET closed_at = now() WHERE order_id = 'A';
SELECT model, item_id, regexp_replace(problem, 'reservation \d+', 'reservation N') AS problem
  FROM harbor.check_stock();
UPDATE harbor.stock_reservations SET closed_at = NULL WHERE order_id = 'A';
SELECT harbor.release_reservation('K');
UPDATE rsv.bins SET units = 0 WHERE bin IN (11, 12);
SELECT * FROM harbor.check_stock();

-- ---------------------------------------------------------------- privileges
CREATE ROLE rsv_clerk;
GRANT USAGE ON SCHEMA rsv TO rsv_clerk;
GRANT SELECT, INSERT, UPDATE, DELETE ON harbor.stock_reservations TO rsv_clerk;
GRANT SELECT ON rsv.variants TO rsv_clerk;
GRANT SELECT, UPDATE ON rsv.bins TO rsv_clerk;
SET ROLE rsv_clerk;
SELECT harbor.reserve_stock(2, 1, 'L', model => 'variants');
RESET ROLE;
-- with UPDATE, row-level security decides which items it may reserve
GRANT UPDATE ON rsv.variants TO rsv_clerk;
ALTER TABLE rsv.variants ENABLE ROW LEVEL SECURITY;
CREATE POLICY mugs_only ON rsv.variants TO rsv_clerk USING (sku LIKE 'MUG-%');
SET ROLE rsv_clerk;
SELECT order_id, item_id, qty FROM harbor.reserve_stock(2, 1, 'L', model => 'variants');
SELECT harbor.reserve_stock(3, 1, 'L', model => 'variants');
-- sweeping as a role that row-level security restricts would lose stock
SELECT harbor.sweep_expired();
SELECT harbor.release_reservation('L');
RESET ROLE;
ALTER TABLE rsv.variants DISABLE ROW LEVEL SECURITY;
SELECT * FROM rsv.state;

-- ---------------------------------------------------------------- isolation
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT qty FROM harbor.reserve_stock(2, 2, 'M', model => 'variants');
SELECT harbor.confirm_reservation('M');
COMMIT;
SELECT * FROM rsv.state WHERE id = 2;

-- ---------------------------------------------------------------- the registry
-- unregistering the model drops its stock setting
SELECT harbor.unregister_model('bins');
SELECT model FROM harbor.stock_models;
SELECT order_id, qty FROM harbor.reserve_stock(1, 1, 'N');
SELECT * FROM harbor.check_stock();

DROP SCHEMA rsv CASCADE;
DELETE FROM harbor.stock_reservations;
DROP OWNED BY rsv_clerk;
DROP ROLE rsv_clerk;

-- ---------------------------------------------------------------- the sweep acts as the table owner
-- A non-superuser owns a stock table whose trigger, CHECK constraint and
-- index expression call its own functions; they try to make the owner a
-- superuser and record who they run as.  Sweeping as a superuser must run
-- them as the owner, under a security-restricted operation.
CREATE ROLE esc_owner;
CREATE ROLE esc_clerk;
CREATE SCHEMA esc AUTHORIZATION esc_owner;
SET ROLE esc_owner;
CREATE TABLE esc.goods (id int PRIMARY KEY, stock_qty int NOT NULL);
CREATE TABLE esc.seen (what text, who name, became_superuser boolean);
CREATE FUNCTION esc.grab(what text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        EXECUTE 'ALTER ROLE esc_owner SUPERUSER';
        INSERT INTO esc.seen VALUES (what, current_user, true);
    EXCEPTION WHEN insufficient_privilege THEN
        INSERT INTO esc.seen VALUES (what, current_user, false);
    END;
    RETURN true;
END $$;
CREATE FUNCTION esc.on_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM esc.grab('trigger');
    RETURN NEW;
END $$;
CREATE TRIGGER grab BEFORE UPDATE ON esc.goods FOR EACH ROW EXECUTE FUNCTION esc.on_update();
CREATE FUNCTION esc.ix(n int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RAISE NOTICE 'index expression runs as %', current_user;
    RETURN n;
END $$;
CREATE INDEX goods_ix ON esc.goods (esc.ix(stock_qty));
INSERT INTO esc.goods VALUES (1, 10), (2, 10);
ALTER TABLE esc.goods ADD CONSTRAINT grab CHECK (esc.grab('check'));
GRANT USAGE ON SCHEMA esc TO esc_clerk;
GRANT SELECT, UPDATE ON esc.goods TO esc_clerk;
GRANT INSERT ON esc.seen TO esc_clerk;
RESET ROLE;
GRANT SELECT, INSERT, UPDATE ON harbor.stock_reservations TO esc_clerk;
SELECT harbor.register_model('esc.goods');
SELECT harbor.enable_stock('goods');
SET ROLE esc_clerk;
SELECT qty FROM harbor.reserve_stock(1, 3, 'esc-1', model => 'goods');
SELECT qty FROM harbor.reserve_stock(2, 4, 'esc-2', model => 'goods');
RESET ROLE;
UPDATE harbor.stock_reservations SET expires_at = now() - interval '1 second'
 WHERE order_id = 'esc-1';
TRUNCATE esc.seen;
SET client_min_messages = notice;
SELECT harbor._sweep_batch(10);
UPDATE harbor.stock_reservations SET expires_at = now() - interval '1 second'
 WHERE order_id = 'esc-2';
SELECT harbor.sweep_expired();
SET client_min_messages = warning;
SELECT what, who, became_superuser FROM esc.seen ORDER BY what, who;
SELECT rolsuper FROM pg_roles WHERE rolname = 'esc_owner';
SELECT id, stock_qty FROM esc.goods ORDER BY id;
-- a dedicated sweeping role: the owner's code still runs as the owner,
-- not with the sweeper's rights
CREATE ROLE esc_sweeper;
GRANT SELECT, UPDATE ON harbor.stock_reservations TO esc_sweeper;
GRANT USAGE ON SCHEMA esc TO esc_sweeper;
GRANT UPDATE ON esc.goods TO esc_sweeper;
SET ROLE esc_clerk;
SELECT qty FROM harbor.reserve_stock(1, 1, 'esc-5', '1 hour', 'goods');
RESET ROLE;
UPDATE harbor.stock_reservations SET expires_at = now() - interval '1 second'
 WHERE order_id = 'esc-5';
TRUNCATE esc.seen;
SET ROLE esc_sweeper;
SELECT harbor.sweep_expired();
RESET ROLE;
SELECT what, who, became_superuser FROM esc.seen ORDER BY what, who;
-- a role that could not move the stock itself sweeps nothing
REVOKE UPDATE ON esc.goods FROM esc_sweeper;
SET ROLE esc_sweeper;
SELECT harbor.sweep_expired();
RESET ROLE;
DROP OWNED BY esc_sweeper;
DROP ROLE esc_sweeper;

-- ---------------------------------------------------------------- forged holds
-- A role with the documented INSERT and UPDATE on harbor.stock_reservations
-- but no UPDATE on the item table writes expired holds directly (claiming
-- to be the owner, or reopening a confirmed hold).  Neither the sweeps nor
-- a reserving clerk's reclaim may give their stock back.
CREATE ROLE esc_forger;
GRANT USAGE ON SCHEMA esc TO esc_forger;
GRANT SELECT ON esc.goods TO esc_forger;
GRANT SELECT, INSERT, UPDATE ON harbor.stock_reservations TO esc_forger;
SET ROLE esc_clerk;
SELECT qty FROM harbor.reserve_stock(2, 2, 'esc-3', model => 'goods');
SELECT harbor.confirm_reservation('esc-3');
SET ROLE esc_forger;
INSERT INTO harbor.stock_reservations (model, item_id, order_id, qty, expires_at, created_by)
VALUES ('goods', 1, 'forged', 1000, now() - interval '1 hour', 'esc_owner');
UPDATE harbor.stock_reservations
   SET status = 'active', closed_at = NULL, expires_at = now() - interval '1 hour'
 WHERE order_id = 'esc-3';
-- in the same batch, an expired hold whose writer may be credited (the
-- sweeps keep one decision per writer and batch): released
SET ROLE esc_clerk;
SELECT qty FROM harbor.reserve_stock(2, 1, 'esc-3b', model => 'goods');
RESET ROLE;
UPDATE harbor.stock_reservations SET expires_at = now() - interval '1 hour'
 WHERE order_id = 'esc-3b';
SELECT order_id, item_id, qty, status,
       CASE WHEN created_by = current_user::regrole THEN 'the test role'
            ELSE created_by::text END AS created_by
  FROM harbor.stock_reservations
 WHERE order_id IN ('forged', 'esc-3', 'esc-3b') ORDER BY order_id;
SELECT harbor.sweep_expired();
SELECT id, stock_qty FROM esc.goods ORDER BY id;
SELECT model, item_id, regexp_replace(problem, 'reservation \d+', 'reservation N') AS problem
  FROM harbor.check_stock();
-- the clerk's reserve reclaims only holds it may credit: item 1 keeps 10 units
SET ROLE esc_clerk;
SELECT harbor.reserve_stock(1, 11, 'esc-4', model => 'goods');
RESET ROLE;
SELECT id, stock_qty FROM esc.goods ORDER BY id;
DELETE FROM harbor.stock_reservations WHERE order_id IN ('forged', 'esc-3', 'esc-3b');

-- ---------------------------------------------------------------- stock that does not fit
-- One item whose stock cannot take its expired holds back stays as it is,
-- with a warning; the other holds of the batch are released.
UPDATE esc.goods SET stock_qty = 2147483600 WHERE id = 1;
SET ROLE esc_clerk;
SELECT qty FROM harbor.reserve_stock(1, 100, 'big', model => 'goods');
SELECT qty FROM harbor.reserve_stock(2, 1, 'small', model => 'goods');
RESET ROLE;
UPDATE esc.goods SET stock_qty = 2147483600 WHERE id = 1;
UPDATE harbor.stock_reservations SET expires_at = now() - interval '1 second'
 WHERE order_id IN ('big', 'small');
SELECT harbor._sweep_batch(10);
SELECT harbor.sweep_expired();
SELECT order_id, status FROM harbor.stock_reservations WHERE order_id IN ('big', 'small') ORDER BY 1;
UPDATE esc.goods SET stock_qty = 0 WHERE id = 1;
SELECT harbor.sweep_expired();
SELECT order_id, status FROM harbor.stock_reservations WHERE order_id IN ('big', 'small') ORDER BY 1;
SELECT id, stock_qty FROM esc.goods ORDER BY id;

-- ---------------------------------------------------------------- rename
-- Kept statements follow the table: reserve, rename in a new transaction,
-- reserve again in the same session; then SET SCHEMA.
ALTER TABLE esc.goods DISABLE TRIGGER grab;
ALTER TABLE esc.goods DROP CONSTRAINT grab;
DROP INDEX esc.goods_ix;
UPDATE esc.goods SET stock_qty = 10;
SELECT qty FROM harbor.reserve_stock(1, 1, 'rn-1', model => 'goods');
ALTER TABLE esc.goods RENAME TO wares;
SELECT qty FROM harbor.reserve_stock(1, 1, 'rn-2', model => 'goods');
SELECT * FROM harbor.stock_status(1, 'goods');
CREATE SCHEMA esc2;
ALTER TABLE esc.wares SET SCHEMA esc2;
SELECT qty FROM harbor.reserve_stock(1, 1, 'rn-3', model => 'goods');
UPDATE harbor.stock_reservations SET expires_at = now() - interval '1 second'
 WHERE order_id LIKE 'rn-%';
SELECT harbor.sweep_expired();
SELECT id, stock_qty FROM esc2.wares ORDER BY id;

SELECT harbor.unregister_model('goods');
DROP SCHEMA esc CASCADE;
DROP SCHEMA esc2 CASCADE;
DELETE FROM harbor.stock_reservations;
DROP OWNED BY esc_clerk;
DROP OWNED BY esc_forger;
DROP OWNED BY esc_owner;
DROP ROLE esc_owner, esc_clerk, esc_forger;
