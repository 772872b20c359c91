-- The reservation functions run with the caller's search_path (they have no
-- SET clause): whatever a user puts first in it (an = operator, a count
-- aggregate, a now() function, objects in pg_temp) must not change what
-- reserve_stock, reserve_many, confirm, release and extend do, and they
-- must work with an empty search_path.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS harbor_orm;
SET LOCAL client_min_messages = warning;
SELECT plan(9);

SELECT is((SELECT array_agg(p.proname::text ORDER BY p.proname)
             FROM pg_proc p
            WHERE p.pronamespace = 'harbor'::regnamespace AND p.proconfig IS NULL
              AND p.proname IN ('reserve_stock', 'reserve_many', 'confirm_reservation',
                                'release_reservation', 'extend_reservation')),
          ARRAY['confirm_reservation', 'extend_reservation', 'release_reservation',
                'reserve_many', 'reserve_stock'],
          'the reservation functions have no fixed search_path');
SELECT is_empty($$ SELECT p.proname FROM pg_proc p
                    WHERE p.pronamespace = 'harbor'::regnamespace AND p.prosecdef
                      AND p.proconfig IS NULL $$,
                'SECURITY DEFINER functions keep theirs');

CREATE SCHEMA tap_sp;
CREATE TABLE tap_sp.items (id int PRIMARY KEY, stock_qty int NOT NULL CHECK (stock_qty >= 0));
INSERT INTO tap_sp.items VALUES (1, 10), (2, 10), (3, 1);
CREATE TABLE tap_sp.got (step text PRIMARY KEY, result text);
DO $$ BEGIN PERFORM harbor.register_model('tap_sp.items', 'tap_sp_items'); PERFORM harbor.enable_stock('tap_sp_items'); END $$;

-- Objects that would change the outcome if any statement found them: an
-- always-true =, a >= that never refuses, a - that adds, a count(*) that
-- always says 1, a now() in the past, and in pg_temp tables named like
-- harbor's and the user's tables and like the type text (created last: the
-- type would shadow pg_catalog.text for everything this file runs).
CREATE SCHEMA tap_evil;
CREATE FUNCTION tap_evil.yes_bb(bigint, bigint) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE FUNCTION tap_evil.yes_bi(bigint, integer) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE FUNCTION tap_evil.yes_ib(integer, bigint) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE FUNCTION tap_evil.yes_ii(integer, integer) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE FUNCTION tap_evil.yes_tt(text, text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE FUNCTION tap_evil.add_ii(integer, integer) RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT $1 + $2';
CREATE OPERATOR tap_evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = tap_evil.yes_bb);
CREATE OPERATOR tap_evil.= (LEFTARG = bigint, RIGHTARG = integer, FUNCTION = tap_evil.yes_bi);
CREATE OPERATOR tap_evil.= (LEFTARG = integer, RIGHTARG = bigint, FUNCTION = tap_evil.yes_ib);
CREATE OPERATOR tap_evil.= (LEFTARG = integer, RIGHTARG = integer, FUNCTION = tap_evil.yes_ii);
CREATE OPERATOR tap_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = tap_evil.yes_tt);
CREATE OPERATOR tap_evil.>= (LEFTARG = integer, RIGHTARG = integer, FUNCTION = tap_evil.yes_ii);
CREATE OPERATOR tap_evil.- (LEFTARG = integer, RIGHTARG = integer, FUNCTION = tap_evil.add_ii);
CREATE FUNCTION tap_evil.one(bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS 'SELECT 1::bigint';
CREATE AGGREGATE tap_evil.count(*) (SFUNC = tap_evil.one, STYPE = bigint, INITCOND = '1');
CREATE FUNCTION tap_evil.now() RETURNS timestamptz LANGUAGE sql STABLE AS $$ SELECT timestamptz '2000-01-01' $$;

-- The same calls under each search_path, p prefixing the order ids.  The
-- function has no SET clause: its statements are planned under the
-- caller's path, so each one is written fully qualified.
CREATE FUNCTION tap_sp.scenario(p text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r harbor.stock_reservations;
    n integer;
BEGIN
    r := harbor.reserve_stock(1, 2, p OPERATOR(pg_catalog.||) '-a', '1 hour', 'tap_sp_items');
    INSERT INTO tap_sp.got VALUES (p OPERATOR(pg_catalog.||) ' 1 reserve', r.qty::pg_catalog.text);
    r := harbor.reserve_stock(1, 5, p OPERATOR(pg_catalog.||) '-a', '1 hour', 'tap_sp_items');
    INSERT INTO tap_sp.got VALUES (p OPERATOR(pg_catalog.||) ' 2 grow', r.qty::pg_catalog.text);
    r := harbor.reserve_stock(1, 3, p OPERATOR(pg_catalog.||) '-a', '1 hour', 'tap_sp_items');
    INSERT INTO tap_sp.got VALUES (p OPERATOR(pg_catalog.||) ' 3 shrink', r.qty::pg_catalog.text);
    r := harbor.reserve_stock(3, 1, p OPERATOR(pg_catalog.||) '-b', '1 hour', 'tap_sp_items');
    INSERT INTO tap_sp.got VALUES (p OPERATOR(pg_catalog.||) ' 4 reclaim', r.qty::pg_catalog.text);
    BEGIN
        r := harbor.reserve_stock(2, 100, p OPERATOR(pg_catalog.||) '-c', '1 hour', 'tap_sp_items');
        INSERT INTO tap_sp.got VALUES (p OPERATOR(pg_catalog.||) ' 5 short', 'reserved');
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO tap_sp.got VALUES (p OPERATOR(pg_catalog.||) ' 5 short', SQLSTATE);
    END;
    BEGIN
        r := harbor.reserve_stock(99, 1, p OPERATOR(pg_catalog.||) '-c', '1 hour', 'tap_sp_items');
        INSERT INTO tap_sp.got VALUES (p OPERATOR(pg_catalog.||) ' 6 unknown', 'reserved');
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO tap_sp.got VALUES (p OPERATOR(pg_catalog.||) ' 6 unknown', SQLSTATE);
    END;
    INSERT INTO tap_sp.got
    SELECT p OPERATOR(pg_catalog.||) ' 7 many',
           pg_catalog.string_agg(m.item_id::pg_catalog.text OPERATOR(pg_catalog.||) ':'
                                 OPERATOR(pg_catalog.||) m.qty::pg_catalog.text, ',' ORDER BY m.item_id)
      FROM harbor.reserve_many(p OPERATOR(pg_catalog.||) '-d',
                               '[{"item_id": 2, "qty": 2}, {"item_id": 1, "qty": 1}]',
                               '1 minute', 'tap_sp_items') m;
    n := harbor.extend_reservation(p OPERATOR(pg_catalog.||) '-d', '2 hours');
    INSERT INTO tap_sp.got VALUES (p OPERATOR(pg_catalog.||) ' 8 extend', n::pg_catalog.text);
    n := harbor.confirm_reservation(p OPERATOR(pg_catalog.||) '-d');
    INSERT INTO tap_sp.got VALUES (p OPERATOR(pg_catalog.||) ' 9 confirm', n::pg_catalog.text);
    n := harbor.release_reservation(p OPERATOR(pg_catalog.||) '-a');
    INSERT INTO tap_sp.got VALUES (p OPERATOR(pg_catalog.||) ' 10 release', n::pg_catalog.text);
END $$;

CREATE FUNCTION tap_sp.state() RETURNS text LANGUAGE sql SET search_path = pg_catalog AS $$
    SELECT (SELECT string_agg(id || '=' || stock_qty, ',' ORDER BY id) FROM tap_sp.items)
           || ' | ' ||
           (SELECT string_agg(order_id || ':' || item_id || ':' || qty || ':' || status
                              || CASE WHEN status = 'active' AND expires_at <= now() THEN ' (expired)'
                                      ELSE '' END, ',' ORDER BY order_id, item_id)
              FROM harbor.stock_reservations WHERE model = 'tap_sp_items')
$$;

-- an expired hold of another order on item 3, for reserve to reclaim
DO $$ BEGIN PERFORM harbor.reserve_stock(3, 1, 'old', '1 hour', 'tap_sp_items'); END $$;
UPDATE harbor.stock_reservations SET expires_at = now() - interval '1 second' WHERE order_id = 'old';

-- The hostile path, with every cache rebuilt under it.
DO $$ BEGIN PERFORM harbor.enable_stock('tap_sp_items'); END $$;
CREATE TEMP TABLE items (id int, stock_qty int);
CREATE TEMP TABLE stock_reservations (LIKE harbor.stock_reservations);
CREATE TEMP TABLE stock_model (LIKE harbor.stock_model);
CREATE TEMP TABLE text (x int);
SET LOCAL search_path = pg_temp, tap_evil, pg_catalog;
DO $$ BEGIN PERFORM tap_sp.scenario('h'); END $$;
RESET search_path;
DROP TABLE pg_temp.text;

SELECT results_eq($$ SELECT step, result FROM tap_sp.got WHERE step LIKE 'h %' ORDER BY split_part(step, ' ', 2)::int $$,
                  $$ VALUES ('h 1 reserve', '2'), ('h 2 grow', '5'), ('h 3 shrink', '3'), ('h 4 reclaim', '1'),
                            ('h 5 short', 'HB001'), ('h 6 unknown', 'HB002'), ('h 7 many', '1:1,2:2'),
                            ('h 8 extend', '2'), ('h 9 confirm', '2'), ('h 10 release', '1') $$,
                  'hostile search_path: every call returns what it should');
SELECT is(tap_sp.state(),
          '1=9,2=8,3=0 | h-a:1:3:released,h-b:3:1:active,h-d:1:1:confirmed,h-d:2:2:confirmed,old:3:1:expired',
          'hostile search_path: stock and holds as they should be');
SELECT is((SELECT count(*)::int FROM pg_temp.stock_reservations), 0, 'the temporary tables were not touched');
SELECT is((SELECT count(*)::int FROM harbor.stock_reservations WHERE created_by IS DISTINCT FROM current_user::regrole
                                                                 AND model = 'tap_sp_items'), 0,
          'every hold records its writer');

-- An empty search_path, again after a rebuild of every cache.
UPDATE harbor.stock_reservations SET expires_at = now() - interval '1 second' WHERE order_id = 'h-b';
DO $$ BEGIN PERFORM harbor.enable_stock('tap_sp_items'); END $$;
SET LOCAL search_path = '';
DO $$ BEGIN PERFORM tap_sp.scenario('e'); END $$;
RESET search_path;

SELECT results_eq($$ SELECT step, result FROM tap_sp.got WHERE step LIKE 'e %' ORDER BY split_part(step, ' ', 2)::int $$,
                  $$ VALUES ('e 1 reserve', '2'), ('e 2 grow', '5'), ('e 3 shrink', '3'), ('e 4 reclaim', '1'),
                            ('e 5 short', 'HB001'), ('e 6 unknown', 'HB002'), ('e 7 many', '1:1,2:2'),
                            ('e 8 extend', '2'), ('e 9 confirm', '2'), ('e 10 release', '1') $$,
                  'empty search_path: every call returns what it should');
SELECT is(tap_sp.state(),
          '1=8,2=6,3=0 | e-a:1:3:released,e-b:3:1:active,e-d:1:1:confirmed,e-d:2:2:confirmed,'
          'h-a:1:3:released,h-b:3:1:expired,h-d:1:1:confirmed,h-d:2:2:confirmed,old:3:1:expired',
          'empty search_path: stock and holds as they should be');

-- Plans kept under the hostile path do not leak into a normal one.
CREATE TEMP TABLE text (x int);
SET LOCAL search_path = pg_temp, tap_evil, pg_catalog;
DO $$ BEGIN PERFORM harbor.reserve_stock(2, 1, 'mixed', '1 hour', 'tap_sp_items'); END $$;
RESET search_path;
DROP TABLE pg_temp.text;
DO $$ BEGIN PERFORM harbor.reserve_stock(2, 1, 'mixed2', '1 hour', 'tap_sp_items'); END $$;
SELECT is(tap_sp.state() LIKE '1=8,2=4,3=0 |%', true, 'switching search_path between calls');

SELECT * FROM finish();
ROLLBACK;
