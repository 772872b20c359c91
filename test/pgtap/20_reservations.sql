-- Stock reservations: every function, every error path, and that errors
-- change nothing.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS harbor_orm;
SET LOCAL client_min_messages = warning;
SELECT plan(122);

CREATE SCHEMA tap_rsv;
CREATE TABLE tap_rsv.variants (id int PRIMARY KEY, sku text, stock_qty int NOT NULL CHECK (stock_qty >= 0));
INSERT INTO tap_rsv.variants VALUES (1, 'MUG', 5), (2, 'TEE', 10), (3, 'CAP', 1);
CREATE TABLE tap_rsv.pairs (a int, b int, qty int, PRIMARY KEY (a, b));
CREATE TABLE tap_rsv.lines (id bigint PRIMARY KEY, variant_id int REFERENCES tap_rsv.variants (id), note text);
DO $$
BEGIN
    PERFORM harbor.register_model('tap_rsv.variants', 'tap_variants');
    PERFORM harbor.register_model('tap_rsv.pairs', 'tap_pairs');
    PERFORM harbor.register_model('tap_rsv.lines', 'tap_lines');
END $$;

-- everything that must not move when a call fails
CREATE FUNCTION tap_rsv.snapshot() RETURNS text LANGUAGE sql AS $$
    SELECT (SELECT string_agg(id || '=' || stock_qty, ',' ORDER BY id) FROM tap_rsv.variants)
           || ' | ' ||
           COALESCE((SELECT string_agg(order_id || ':' || item_id || ':' || qty || ':' || status
                                       || ':' || (expires_at - created_at), ',' ORDER BY id)
                       FROM harbor.stock_reservations WHERE model = 'tap_variants'), '')
$$;
CREATE FUNCTION tap_rsv.unchanged(call text, errcode text, description text) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    before text := tap_rsv.snapshot();
BEGIN
    RETURN NEXT throws_ok(call, errcode, NULL, description);
    RETURN NEXT is(tap_rsv.snapshot(), before, description || ': nothing changed');
END $$;
CREATE FUNCTION tap_rsv.stock(item int) RETURNS int LANGUAGE sql AS
    $$ SELECT stock_qty FROM tap_rsv.variants WHERE id = item $$;

-- enable_stock
SELECT has_function('harbor', 'enable_stock', ARRAY['text', 'name']);
SELECT lives_ok($$ SELECT harbor.enable_stock('tap_variants') $$, 'enable_stock with the default column');
SELECT is((SELECT stock_column::text FROM harbor.stock_models WHERE model = 'tap_variants'), 'stock_qty', 'stock model listed');
SELECT throws_ok($$ SELECT harbor.enable_stock('tap_nope') $$, '42704', NULL, 'unknown model');
SELECT throws_ok($$ SELECT harbor.enable_stock('tap_pairs', 'qty') $$, '42804', NULL, 'composite primary key');
SELECT throws_ok($$ SELECT harbor.enable_stock('tap_lines', 'note') $$, '42804', NULL, 'text stock column');
SELECT throws_ok($$ SELECT harbor.enable_stock('tap_variants', 'nope') $$, '42703', NULL, 'missing stock column');
SELECT throws_ok($$ SELECT harbor.enable_stock('tap_variants', 'id') $$, '22023', NULL, 'primary key as stock column');
SELECT throws_ok($$ SELECT harbor.enable_stock(NULL, 'stock_qty') $$, '22004', NULL, 'null model');

-- reserve_stock
SELECT is((SELECT qty FROM harbor.reserve_stock(1, 2, 'o1', model => 'tap_variants')), 2, 'reserve 2');
SELECT is(tap_rsv.stock(1), 3, 'stock decremented');
SELECT is((SELECT status FROM harbor.stock_reservations WHERE order_id = 'o1'), 'active', 'hold is active');
SELECT is((SELECT expires_at - created_at FROM harbor.stock_reservations WHERE order_id = 'o1'),
          interval '15 minutes', 'default ttl');
SELECT is((SELECT qty FROM harbor.reserve_stock(1, 4, 'o1', '1 hour', 'tap_variants')), 4, 'retry with a larger qty');
SELECT is(tap_rsv.stock(1), 1, 'only the difference is taken');
SELECT is((SELECT qty FROM harbor.reserve_stock(1, 1, 'o1', '1 hour', 'tap_variants')), 1, 'retry with a smaller qty');
SELECT is(tap_rsv.stock(1), 4, 'the difference goes back');
SELECT is((SELECT count(*)::int FROM harbor.stock_reservations WHERE order_id = 'o1'), 1, 'a retry never adds a hold');
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor.reserve_stock(1, 6, 'o2', model => 'tap_variants') $$, 'HB001', 'insufficient stock');
SELECT throws_like($$ SELECT harbor.reserve_stock(1, 6, 'o2', model => 'tap_variants') $$,
                   'insufficient stock for item 1 of model "tap_variants"', 'HB001 message');
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor.reserve_stock(42, 1, 'o2', model => 'tap_variants') $$, 'HB002', 'unknown item');
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor.reserve_stock(1, 0, 'o2', model => 'tap_variants') $$, '22023', 'zero qty');
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor.reserve_stock(1, 1, '', model => 'tap_variants') $$, '22023', 'empty order');
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor.reserve_stock(1, 1, 'o2', '-1 minute', 'tap_variants') $$, '22023', 'negative ttl');
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor.reserve_stock(NULL, 1, 'o2', model => 'tap_variants') $$, '22004', 'null item');
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor.reserve_stock(1, NULL, 'o2', model => 'tap_variants') $$, '22004', 'null qty');
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor.reserve_stock(1, 1, NULL, model => 'tap_variants') $$, '22004', 'null order');
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor.reserve_stock(1, 1, 'o2', NULL, 'tap_variants') $$, '22004', 'null ttl');
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor.reserve_stock(1, 1, 'o2', model => 'tap_lines') $$, '55000', 'model without stock');
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor.reserve_stock(1, 1, 'o2', model => 'tap_nope') $$, '42704', 'unknown model');

-- reclaiming expired holds before refusing
SELECT is((SELECT qty FROM harbor.reserve_stock(3, 1, 'o3', model => 'tap_variants')), 1, 'last cap reserved');
SELECT throws_ok($$ SELECT harbor.reserve_stock(3, 1, 'o4', model => 'tap_variants') $$, 'HB001', NULL, 'no cap left');
UPDATE harbor.stock_reservations SET expires_at = now() - interval '1 second' WHERE order_id = 'o3';
SELECT is((SELECT qty FROM harbor.reserve_stock(3, 1, 'o4', model => 'tap_variants')), 1, 'expired hold reclaimed');
SELECT is((SELECT status FROM harbor.stock_reservations WHERE order_id = 'o3'), 'expired', 'reclaimed hold marked expired');
SELECT is(tap_rsv.stock(3), 0, 'stock conserved after reclaiming');

-- reserve_many
SELECT is((SELECT count(*)::int FROM harbor.reserve_many('m1', '[{"item_id": 2, "qty": 1}, {"item_id": 1, "qty": 1}, {"item_id": 2, "qty": 2}]',
                                                      model => 'tap_variants')), 2, 'two lines reserved');
SELECT is((SELECT qty FROM harbor.stock_reservations WHERE order_id = 'm1' AND item_id = 2), 3, 'lines of one item summed');
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor.reserve_many('m2', '[{"item_id": 2, "qty": 1}, {"item_id": 3, "qty": 1}]', model => 'tap_variants') $$,
                                'HB001', 'one short line refuses all');
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor.reserve_many('m2', '[{"item_id": 2, "qty": 1}, {"item_id": 77, "qty": 1}]', model => 'tap_variants') $$,
                                'HB002', 'one unknown item refuses all');
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor.reserve_many('m2', '{}', model => 'tap_variants') $$, '22023', 'items not an array');
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor.reserve_many('m2', '[]', model => 'tap_variants') $$, '22023', 'no items');
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor.reserve_many('m2', '[1]', model => 'tap_variants') $$, '22023', 'line not an object');
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor.reserve_many('m2', '[{"item_id": 1}]', model => 'tap_variants') $$, '22023', 'line without qty');
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor.reserve_many('m2', '[{"item_id": 1, "qty": -1}]', model => 'tap_variants') $$, '22023', 'negative qty');
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor.reserve_many('m2', NULL, model => 'tap_variants') $$, '22004', 'null items');
SELECT throws_matching($$ SELECT harbor.reserve_many('m2', '[{"item_id": 2, "qty": 99}, {"item_id": 3, "qty": 5}]', model => 'tap_variants') $$,
                       'insufficient stock for 2 of 2 items', 'the error counts every short line');

-- confirm_reservation
SELECT is(harbor.confirm_reservation('m1'), 2, 'confirm returns how many');
SELECT is((SELECT count(*)::int FROM harbor.stock_reservations WHERE order_id = 'm1' AND status = 'confirmed'), 2, 'holds confirmed');
SELECT is(harbor.confirm_reservation('m1'), 0, 'confirming again confirms nothing more');
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor.confirm_reservation('ghost') $$, 'HB003', 'confirm an order without holds');
UPDATE harbor.stock_reservations SET expires_at = now() - interval '1 second' WHERE order_id = 'o1';
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor.confirm_reservation('o1') $$, 'HB003', 'confirm an expired hold');
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor.confirm_reservation('') $$, '22023', 'confirm empty order');
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor.confirm_reservation(NULL) $$, '22004', 'confirm null order');

-- sweeps
SELECT is(harbor._sweep_batch(10), 1::bigint, 'the batch releases the expired hold');
SELECT is(tap_rsv.stock(1), 4, 'its stock is back');
SELECT is(harbor._sweep_batch(10), 0::bigint, 'nothing left to sweep');
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor.confirm_reservation('o1') $$, 'HB003', 'confirm a swept hold');
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor._sweep_batch(0) $$, '22023', 'batch size zero');
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor.sweep_expired(-1) $$, '22023', 'negative batch size');
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor._purge_closed(NULL) $$, '22004', 'null batch size');
SELECT lives_ok($$ SELECT harbor.reserve_stock(2, 1, 's' || g, '1 second', 'tap_variants') FROM generate_series(1, 5) g $$, 'five short holds');
UPDATE harbor.stock_reservations SET expires_at = now() - interval '1 second' WHERE order_id LIKE 's_';
SELECT is(harbor.sweep_expired(2), 5::bigint, 'sweep_expired loops over batches');
SELECT is(tap_rsv.stock(2), 10 - 3, 'stock restored by the sweep');
SELECT lives_ok($$ SELECT harbor.reserve_stock(2, 1, 'k' || g, '1 second', 'tap_variants') FROM generate_series(1, 3) g $$, 'three holds to expire at different times');
UPDATE harbor.stock_reservations SET expires_at = now() - interval '1 minute' * (4 - substr(order_id, 2)::int)
 WHERE order_id LIKE 'k_';
SELECT is(harbor.sweep_expired(1), 3::bigint, 'sweep_expired goes on past each batch''s expiry');
SELECT is(tap_rsv.stock(2), 10 - 3, 'their stock is back');
DELETE FROM harbor.stock_reservations WHERE order_id LIKE 'k_';
UPDATE harbor.stock_reservations SET closed_at = now() - interval '8 days' WHERE order_id LIKE 's_';
SELECT is(harbor._purge_closed(3), 3::bigint, 'purge deletes at most batch_size');
SELECT is(harbor.sweep_expired(), 0::bigint, 'sweep_expired also purges');
SELECT is((SELECT count(*)::int FROM harbor.stock_reservations WHERE order_id LIKE 's_'), 0, 'old closed holds deleted');

-- release_reservation and extend_reservation
SELECT lives_ok($$ SELECT harbor.reserve_many('r1', '[{"item_id": 1, "qty": 2}, {"item_id": 2, "qty": 2}]', '1 minute', 'tap_variants') $$, 'reserve two lines');
SELECT is(harbor.extend_reservation('r1', '3 hours'), 2, 'extend returns how many');
SELECT ok((SELECT bool_and(expires_at > now() + interval '2 hours') FROM harbor.stock_reservations WHERE order_id = 'r1'), 'expiry renewed');
SELECT is(harbor.extend_reservation('ghost', '1 hour'), 0, 'extend an order without holds');
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor.extend_reservation('r1', '0') $$, '22023', 'extend by zero');
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor.extend_reservation('r1', NULL) $$, '22004', 'extend by null');
SELECT is(harbor.release_reservation('r1', 2), 1, 'release one item');
SELECT is(tap_rsv.stock(2), 7, 'its stock is back');
SELECT is(harbor.release_reservation('r1'), 1, 'release the rest');
SELECT is(harbor.release_reservation('r1'), 0, 'releasing again releases nothing');
SELECT * FROM tap_rsv.unchanged($$ SELECT harbor.release_reservation(NULL) $$, '22004', 'release null order');
SELECT throws_ok($$ SELECT harbor.confirm_reservation('r1') $$, 'HB003', NULL, 'confirm a released order');

-- stock_status and check_stock
SELECT results_eq($$ SELECT on_hand, reserved, confirmed, available FROM harbor.stock_status(2, 'tap_variants') $$,
                  $$ VALUES (7::bigint, 0::bigint, 3::bigint, 7::bigint) $$, 'stock_status');
SELECT throws_ok($$ SELECT * FROM harbor.stock_status(99, 'tap_variants') $$, 'HB002', NULL, 'stock_status of an unknown item');
SELECT is_empty($$ SELECT * FROM harbor.check_stock() WHERE model = 'tap_variants' $$, 'check_stock finds nothing');
SELECT lives_ok($$ SELECT harbor.reserve_stock(2, 1, 'c1', model => 'tap_variants') $$, 'hold on item 2');
DELETE FROM tap_rsv.variants WHERE id = 2;
SELECT results_eq($$ SELECT item_id, problem FROM harbor.check_stock() WHERE model = 'tap_variants' $$,
                  $$ VALUES (2::bigint, '2 active or confirmed holds on an item that does not exist') $$,
                  'check_stock reports holds on a missing item');

-- conservation over everything above: stock + active + confirmed per item
SELECT results_eq($$ SELECT v.id, v.stock_qty + COALESCE((SELECT sum(qty) FROM harbor.stock_reservations r
                                                            WHERE r.model = 'tap_variants' AND r.item_id = v.id
                                                              AND r.status IN ('active', 'confirmed')), 0)::int
                       FROM tap_rsv.variants v ORDER BY v.id $$,
                  $$ VALUES (1, 5), (3, 1) $$, 'stock + active + confirmed conserved');

-- every hold version records its writer; the sweeps credit only writers
-- that could move the stock themselves
SELECT is((SELECT created_by::text FROM harbor.stock_reservations WHERE order_id = 'c1'),
          current_user::text, 'a hold records the role that wrote it');
INSERT INTO harbor.stock_reservations (model, item_id, order_id, qty, expires_at, created_by)
VALUES ('tap_variants', 1, 'f1', 1, now(), 'pg_monitor');
SELECT is((SELECT created_by::text FROM harbor.stock_reservations WHERE order_id = 'f1'),
          current_user::text, 'whatever the writer put in created_by');
SELECT ok(harbor._hold_creditable(current_user::regrole, 'tap_rsv.variants'::regclass, 3::int2),
          'a role that may update the stock column is credited');
SELECT ok(NOT harbor._hold_creditable('pg_monitor'::regrole, 'tap_rsv.variants'::regclass, 3::int2),
          'a role that may not is not');
SELECT ok(harbor._hold_creditable(NULL, 'tap_rsv.variants'::regclass, 3::int2),
          'holds from before 0.2.0 are');

SELECT * FROM finish();
ROLLBACK;
