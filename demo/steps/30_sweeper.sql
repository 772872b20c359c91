\echo '== Expiry sweeper: abandoned checkouts go back to stock with no client and no cron'
SET client_min_messages = warning;
-- Step 20 enables stock on variants; this keeps the step runnable on its own.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM harbor.stock_models WHERE model = 'variants') THEN
        PERFORM harbor.enable_stock('variants', 'stock_qty');
    END IF;
END $$;
INSERT INTO brands (name) VALUES ('Harbor Originals') ON CONFLICT DO NOTHING;
INSERT INTO products (sku, name, price_cents, brand_id)
     SELECT 'TOTE-01', 'Canvas tote', 1800, id FROM brands WHERE name = 'Harbor Originals';
INSERT INTO variants (product_id, size, stock_qty)
     SELECT id, 'one size', 10 FROM products WHERE sku = 'TOTE-01'
  RETURNING id AS tote \gset

\echo 'Three shoppers put the canvas tote (10 in stock) in their carts with a 1-second hold, then leave:'
SELECT r.order_id, r.qty, r.status
  FROM (VALUES ('cart-1', 2), ('cart-2', 1), ('cart-3', 3)) AS c(order_id, qty),
       LATERAL harbor.reserve_stock(:tote, c.qty, c.order_id, '1 second', 'variants') AS r
 ORDER BY r.order_id;
SELECT stock_qty AS tote_stock_while_held FROM variants WHERE id = :tote;

\echo 'Nobody calls anything now; the background worker (sweep_interval = 1s) releases the holds.'
DO $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '20 seconds';
BEGIN
    WHILE EXISTS (SELECT FROM harbor.stock_reservations
                   WHERE order_id LIKE 'cart-_' AND status = 'active') LOOP
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'the holds were not released within 20 seconds';
        END IF;
        PERFORM pg_sleep(0.2);
    END LOOP;
END $$;
SELECT order_id, qty, status,
       round(extract(epoch FROM closed_at - expires_at), 1) AS seconds_after_expiry
  FROM harbor.stock_reservations WHERE order_id LIKE 'cart-_' ORDER BY order_id;
SELECT stock_qty AS tote_stock_after_the_sweep FROM variants WHERE id = :tote;

\echo 'harbor.sweeper_status(): what the worker did, per database (visible from any database):'
SELECT database, mode, state, rounds, released_total, purged_total, errors,
       last_run_end IS NOT NULL AS has_run, last_error
  FROM harbor.sweeper_status() ORDER BY database;
