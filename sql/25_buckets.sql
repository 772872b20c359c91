-- Stock buckets: split_stock, merge_stock, the stock_buckets view, every
-- reservation function on split items, and the error paths with their
-- SQLSTATEs.  The first bucket a checkout tries is random, so the output
-- shows sums and whether a hold's own bucket got its stock back, never
-- bucket numbers that depend on the draw.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS harbor_orm;
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE SCHEMA bkt;
CREATE TABLE bkt.mugs (id integer PRIMARY KEY, stock_qty integer NOT NULL CHECK (stock_qty >= 0));
INSERT INTO bkt.mugs VALUES (1, 100), (2, 10), (3, 5), (4, 0);
CREATE TABLE bkt.labels (id integer PRIMARY KEY, qty integer);
SELECT harbor.register_model('bkt.mugs');
SELECT harbor.register_model('bkt.labels');
SELECT harbor.enable_stock('mugs', 'stock_qty');

-- the SQLSTATE of a statement, or ok
CREATE FUNCTION bkt.err(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE stmt;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- Per item: the stock column, its buckets, active and confirmed holds, and
-- their sum, which every step must keep.
CREATE VIEW bkt.state AS
SELECT m.id, m.stock_qty AS col,
       (SELECT count(*) FROM harbor.stock_buckets b WHERE b.model = 'mugs' AND b.item_id = m.id) AS nbuckets,
       (SELECT COALESCE(sum(b.stock), 0) FROM harbor.stock_buckets b WHERE b.model = 'mugs' AND b.item_id = m.id) AS buckets,
       (SELECT COALESCE(sum(r.qty), 0) FROM harbor.stock_reservations r
         WHERE r.model = 'mugs' AND r.item_id = m.id AND r.status = 'active') AS active,
       (SELECT COALESCE(sum(r.qty), 0) FROM harbor.stock_reservations r
         WHERE r.model = 'mugs' AND r.item_id = m.id AND r.status = 'confirmed') AS confirmed
  FROM bkt.mugs m ORDER BY m.id;
CREATE VIEW bkt.total AS
SELECT id, col + buckets + active + confirmed AS total FROM bkt.state;
-- the stock now in the bucket an order's hold on an item recorded
CREATE FUNCTION bkt.own_bucket(o text, i bigint) RETURNS bigint LANGUAGE sql AS $$
    SELECT b.stock FROM harbor.stock_reservations r
      JOIN harbor.stock_buckets b ON b.model = r.model AND b.item_id = r.item_id AND b.bucket = r.bucket
     WHERE r.order_id = o AND r.item_id = i ORDER BY r.id DESC LIMIT 1
$$;

-- Errors
SELECT bkt.err($$SELECT harbor.split_stock('nope', 1)$$);
SELECT bkt.err($$SELECT harbor.split_stock('labels', 1)$$);
SELECT bkt.err($$SELECT harbor.split_stock('mugs', 99)$$);
SELECT bkt.err($$SELECT harbor.split_stock('mugs', 1, 0)$$);
SELECT bkt.err($$SELECT harbor.split_stock('mugs', 1, -3)$$);
SELECT bkt.err($$SELECT harbor.split_stock('mugs', 1, 100000)$$);
SELECT bkt.err($$SELECT harbor.split_stock(NULL, 1)$$);
SELECT bkt.err($$SELECT harbor.split_stock('mugs', NULL)$$);
SELECT bkt.err($$SELECT harbor.split_stock('mugs', 1, NULL)$$);
SELECT bkt.err($$SELECT harbor.merge_stock('nope', 1)$$);
SELECT bkt.err($$SELECT harbor.merge_stock('labels', 1)$$);
SELECT bkt.err($$SELECT harbor.merge_stock('mugs', 99)$$);
SELECT bkt.err($$SELECT harbor.merge_stock('mugs', NULL)$$);
-- merging an item that is not split moves nothing
SELECT harbor.merge_stock('mugs', 2);

-- Split: the stock column moves into the buckets, spread evenly.
SELECT harbor.split_stock('mugs', 1, 4);
SELECT bucket, stock FROM harbor.stock_buckets WHERE item_id = 1 ORDER BY bucket;
SELECT * FROM bkt.state;
SELECT * FROM harbor.stock_status(1, 'mugs');
SELECT harbor.split_stock('mugs', 3, 3);
SELECT bucket, stock FROM harbor.stock_buckets WHERE item_id = 3 ORDER BY bucket;

-- Reserving from a bucket: the hold records it.
SELECT qty, bucket IS NOT NULL AS has_bucket FROM harbor.reserve_stock(1, 3, 'b-1', model => 'mugs');
SELECT bkt.own_bucket('b-1', 1) = 22 AS took_from_its_bucket;
SELECT * FROM harbor.stock_status(1, 'mugs');
-- idempotent retry and resize: still one hold
SELECT qty FROM harbor.reserve_stock(1, 3, 'b-1', model => 'mugs');
SELECT qty FROM harbor.reserve_stock(1, 5, 'b-1', model => 'mugs');
SELECT qty FROM harbor.reserve_stock(1, 2, 'b-1', model => 'mugs');
SELECT count(*) FROM harbor.stock_reservations WHERE order_id = 'b-1' AND status = 'active';
SELECT * FROM bkt.total;
-- release gives back to the hold's bucket
SELECT bkt.own_bucket('b-1', 1) AS before_release \gset
SELECT harbor.release_reservation('b-1');
SELECT bkt.own_bucket('b-1', 1) - :before_release AS given_back;
SELECT * FROM bkt.state WHERE id = 1;

-- No single bucket has 30, all of them together do: taken across buckets.
SELECT qty FROM harbor.reserve_stock(1, 30, 'b-2', model => 'mugs');
SELECT * FROM bkt.state WHERE id = 1;
-- Short only when the whole item is: HB001 with what the item has.
SELECT bkt.err($$SELECT harbor.reserve_stock(1, 71, 'b-3', model => 'mugs')$$);
SELECT qty FROM harbor.reserve_stock(1, 70, 'b-3', model => 'mugs');
SELECT * FROM bkt.state WHERE id = 1;
SELECT bkt.err($$SELECT harbor.reserve_stock(1, 1, 'b-4', model => 'mugs')$$);
SELECT count(*) FROM harbor.stock_reservations WHERE order_id = 'b-4';

-- A restock of the column while split is available, and taken last.
UPDATE bkt.mugs SET stock_qty = stock_qty + 4 WHERE id = 1;
SELECT * FROM harbor.stock_status(1, 'mugs');
SELECT qty FROM harbor.reserve_stock(1, 4, 'b-4', model => 'mugs');
SELECT * FROM bkt.state WHERE id = 1;

-- confirm and extend are unchanged; release gives back, sweep gives back.
SELECT harbor.confirm_reservation('b-2');
SELECT harbor.extend_reservation('b-3', '1 hour');
SELECT harbor.release_reservation('b-3');
SELECT * FROM bkt.state WHERE id = 1;
SELECT * FROM bkt.total;

-- expiry: the sweep gives the stock back to the hold's bucket
SELECT qty FROM harbor.reserve_stock(3, 2, 'b-5', model => 'mugs');
SELECT bkt.own_bucket('b-5', 3) AS before_sweep \gset
UPDATE harbor.stock_reservations SET expires_at = now() - interval '1 second' WHERE order_id = 'b-5';
SELECT harbor.sweep_expired();
SELECT bkt.own_bucket('b-5', 3) - :before_sweep AS given_back;
SELECT status FROM harbor.stock_reservations WHERE order_id = 'b-5';
-- ... and so does the background sweeper's batch
SELECT qty FROM harbor.reserve_stock(3, 1, 'b-6', model => 'mugs');
UPDATE harbor.stock_reservations SET expires_at = now() - interval '1 second' WHERE order_id = 'b-6';
SELECT harbor._sweep_batch(10);
SELECT * FROM bkt.state WHERE id = 3;
-- ... and reserve's own reclaim, when the item is short otherwise
SELECT qty FROM harbor.reserve_stock(3, 5, 'b-7', model => 'mugs');
UPDATE harbor.stock_reservations SET expires_at = now() - interval '1 second' WHERE order_id = 'b-7';
SELECT qty FROM harbor.reserve_stock(3, 5, 'b-8', model => 'mugs');
SELECT status FROM harbor.stock_reservations WHERE order_id = 'b-7';
SELECT * FROM bkt.state WHERE id = 3;
SELECT harbor.release_reservation('b-8');

-- reserve_many: split and unsplit lines mixed, all or nothing.
SELECT item_id, qty FROM harbor.reserve_many('b-9', '[{"item_id": 3, "qty": 2}, {"item_id": 2, "qty": 1}, {"item_id": 1, "qty": 1}]', model => 'mugs');
SELECT * FROM bkt.state;
SELECT bkt.err($$SELECT harbor.reserve_many('b-10', '[{"item_id": 3, "qty": 1}, {"item_id": 2, "qty": 100}]', model => 'mugs')$$);
SELECT count(*) FROM harbor.stock_reservations WHERE order_id = 'b-10';
SELECT * FROM bkt.total;

-- Rebalance: another count spreads what is there (column included).
UPDATE bkt.mugs SET stock_qty = stock_qty + 6 WHERE id = 3;
SELECT harbor.split_stock('mugs', 3, 2);
SELECT bucket, stock FROM harbor.stock_buckets WHERE item_id = 3 ORDER BY bucket;
SELECT * FROM bkt.state WHERE id = 3;
-- a hold whose bucket is gone gives back to the stock column
UPDATE harbor.stock_reservations SET bucket = 7 WHERE order_id = 'b-9' AND item_id = 3;
SELECT harbor.release_reservation('b-9', 3);
SELECT * FROM bkt.state WHERE id = 3;
-- merge: the buckets back into the column
SELECT harbor.merge_stock('mugs', 3);
SELECT * FROM bkt.state WHERE id = 3;
SELECT count(*) FROM harbor.stock_buckets WHERE item_id = 3;
SELECT qty FROM harbor.reserve_stock(3, 1, 'b-11', model => 'mugs');
SELECT * FROM bkt.total;
SELECT * FROM harbor.check_stock();

-- an item row deleted while split serves no checkout (HB002), and
-- check_stock reports the buckets it left
UPDATE bkt.mugs SET stock_qty = 3 WHERE id = 4;
SELECT harbor.split_stock('mugs', 4, 2);
SELECT qty FROM harbor.reserve_stock(4, 1, 'b-del-1', model => 'mugs');
SELECT harbor.release_reservation('b-del-1', 4);
DELETE FROM bkt.mugs WHERE id = 4;
SELECT bkt.err($$SELECT harbor.reserve_stock(4, 1, 'b-del-2', model => 'mugs')$$);
SELECT bkt.err($$SELECT harbor.reserve_many('b-del-3', '[{"item_id": 4, "qty": 1}]', model => 'mugs')$$);
SELECT * FROM harbor.check_stock();
SELECT harbor.merge_stock('mugs', 4);
DELETE FROM harbor.stock_bucket WHERE item_id = 4;
SELECT * FROM harbor.check_stock();

-- Privileges.  The bucket table is written only by harbor's functions.
CREATE ROLE bkt_clerk;
CREATE ROLE bkt_reader;
GRANT USAGE ON SCHEMA bkt TO bkt_clerk, bkt_reader;
GRANT SELECT, UPDATE ON bkt.mugs TO bkt_clerk;
GRANT SELECT ON bkt.mugs TO bkt_reader;
GRANT SELECT, INSERT, UPDATE ON harbor.stock_reservations TO bkt_clerk, bkt_reader;
SET ROLE bkt_reader;
-- no UPDATE on the stock column: no reserving, no splitting, no merging
SELECT bkt.err($$SELECT harbor.reserve_stock(1, 1, 'p-1', model => 'mugs')$$);
SELECT bkt.err($$SELECT harbor.split_stock('mugs', 2)$$);
SELECT bkt.err($$SELECT harbor.merge_stock('mugs', 1)$$);
SELECT bkt.err($$UPDATE harbor.stock_bucket SET stock = stock + 1000$$);
SELECT bkt.err($$INSERT INTO harbor.stock_bucket VALUES ('mugs', 2, 0, 1000)$$);
SELECT count(*) > 0 AS sees_buckets FROM harbor.stock_buckets;
RESET ROLE;
-- UPDATE on the stock column alone is enough, as without buckets
REVOKE UPDATE ON bkt.mugs FROM bkt_clerk;
GRANT UPDATE (stock_qty) ON bkt.mugs TO bkt_clerk;
SET ROLE bkt_clerk;
SELECT qty FROM harbor.reserve_stock(1, 1, 'p-2', model => 'mugs');
SELECT harbor.release_reservation('p-2');
RESET ROLE;
-- SELECT of the item is needed too, as the guarded UPDATE reads the row
-- (checked explicitly: without row-level security no statement reads it)
REVOKE SELECT ON bkt.mugs FROM bkt_clerk;
SET ROLE bkt_clerk;
SELECT bkt.err($$SELECT harbor.reserve_stock(1, 1, 'p-2b', model => 'mugs')$$);
RESET ROLE;
GRANT SELECT ON bkt.mugs TO bkt_clerk;
-- row-level security hiding an item hides its buckets too
ALTER TABLE bkt.mugs ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_one ON bkt.mugs USING (id = 1);
SET ROLE bkt_clerk;
SELECT qty FROM harbor.reserve_stock(1, 1, 'p-3', model => 'mugs');
SELECT bkt.err($$SELECT harbor.split_stock('mugs', 2, 2)$$);
RESET ROLE;
SELECT harbor.split_stock('mugs', 2, 2);
SET ROLE bkt_clerk;
SELECT bkt.err($$SELECT harbor.reserve_stock(2, 1, 'p-4', model => 'mugs')$$);
SELECT bkt.err($$SELECT harbor.merge_stock('mugs', 2)$$);
SELECT harbor.release_reservation('p-3');
RESET ROLE;
-- an UPDATE policy that hides the row from updates only
DROP POLICY only_one ON bkt.mugs;
CREATE POLICY see_all ON bkt.mugs FOR SELECT USING (true);
CREATE POLICY update_one ON bkt.mugs FOR UPDATE USING (id = 1);
SET ROLE bkt_clerk;
SELECT bkt.err($$SELECT harbor.reserve_stock(2, 1, 'p-5', model => 'mugs')$$);
SELECT qty FROM harbor.reserve_stock(1, 1, 'p-5', model => 'mugs');
SELECT harbor.release_reservation('p-5');
RESET ROLE;
ALTER TABLE bkt.mugs DISABLE ROW LEVEL SECURITY;
-- a search_path that shadows pg_catalog's operators changes nothing
CREATE SCHEMA evil;
CREATE FUNCTION evil.minus(bigint, bigint) RETURNS bigint LANGUAGE sql AS 'SELECT $1 + $2';
CREATE OPERATOR evil.- (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.minus);
SET search_path = evil, public;
SELECT qty FROM harbor.reserve_stock(2, 1, 'p-6', model => 'mugs');
RESET search_path;
SELECT * FROM bkt.state WHERE id = 2;
SELECT harbor.release_reservation('p-6');
SELECT * FROM bkt.total;
SELECT * FROM harbor.check_stock();

-- Clean up.
SELECT harbor.merge_stock('mugs', 1);
SELECT harbor.merge_stock('mugs', 2);
SELECT harbor.unregister_model('mugs');
SELECT harbor.unregister_model('labels');
DELETE FROM harbor.stock_reservations WHERE model = 'mugs';
DROP SCHEMA bkt CASCADE;
DROP SCHEMA evil CASCADE;
DROP OWNED BY bkt_clerk;
DROP OWNED BY bkt_reader;
DROP ROLE bkt_clerk, bkt_reader;
