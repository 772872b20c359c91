-- harbor.load / get / find under concurrent DDL: another session (dblink)
-- changes a table after this session's transaction has started and before
-- the loader locks it, with this session's caches warm.  Each case gives
-- the right answer or a clean error with its SQLSTATE, never a crash.
-- Runs outside one big transaction, since the other session must see the
-- tables; it drops what it created at the end.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS harbor_orm;
CREATE EXTENSION IF NOT EXISTS dblink;
CREATE SCHEMA lddl;
CREATE SCHEMA lddl2;
CREATE TABLE lddl.brands (id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE lddl.products (id serial PRIMARY KEY, name text NOT NULL,
                            brand_id integer REFERENCES lddl.brands (id));
CREATE TABLE lddl.variants (id serial PRIMARY KEY,
                            product_id integer NOT NULL REFERENCES lddl.products (id), size text);
CREATE TABLE lddl.tags (id serial PRIMARY KEY, label text);
CREATE TABLE lddl.product_tags (product_id integer REFERENCES lddl.products (id),
                                tag_id integer REFERENCES lddl.tags (id), PRIMARY KEY (product_id, tag_id));
INSERT INTO lddl.brands (name) VALUES ('Acme'), ('Bolt');
INSERT INTO lddl.products (name, brand_id) VALUES ('Mug', 1), ('Cap', 2);
INSERT INTO lddl.variants (product_id, size) VALUES (1, 'S'), (1, 'M'), (2, 'L');
INSERT INTO lddl.tags (label) VALUES ('red'), ('new');
INSERT INTO lddl.product_tags VALUES (1, 1), (1, 2);
SELECT harbor.reflect('lddl') AS models \gset

-- DDL run and committed by another session
CREATE FUNCTION pg_temp.elsewhere(sql text) RETURNS text LANGUAGE sql AS $$
    SELECT dblink_exec(format('dbname=%s port=%s host=%s', current_database(),
                              current_setting('port'),
                              split_part(current_setting('unix_socket_directories'), ',', 1)), sql)
$$;

CREATE FUNCTION pg_temp.sqlstate_of(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN '00000';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;

SELECT plan(16);

-- Each harbor call is a statement of its own whose result goes to a psql
-- variable: anything that locks a relation first (a temporary table, a
-- catalog not yet read in the transaction) would take the news of the DDL
-- before the loader and hide the race.  The warm-up reads every catalog
-- row these statements need.
SELECT harbor.get('products', 1, '{brand, variants, tags}') AS r \gset
SELECT is(:'r'::jsonb #>> '{brand,name}', 'Acme', 'warm: loads');
SELECT harbor.load('brands', ARRAY[1], '{products}') AS r \gset
SELECT harbor.load('variants', ARRAY[1], '{product}') AS r \gset
SELECT harbor.find('products', '{"name": "Mug"}') AS r \gset
SELECT pg_temp.sqlstate_of($$SELECT harbor.get('variants', 1)$$) AS r \gset

-- the column type changes between the start of this transaction and the load
BEGIN;
SELECT pg_temp.elsewhere('ALTER TABLE lddl.products ALTER COLUMN name TYPE integer USING length(name)');
SELECT harbor.get('products', 1) AS r1 \gset
SELECT harbor.load('brands', ARRAY[1], '{products}') AS r2 \gset
SELECT is(:'r1'::jsonb -> 'name', '3', 'type change: the column is read as its new type');
SELECT is(:'r2'::jsonb #> '{0,products,0,name}', '3', 'type change: also as the target of a relationship');
COMMIT;
BEGIN;
SELECT pg_temp.elsewhere('ALTER TABLE lddl.products ALTER COLUMN name TYPE text USING name::text || ''x''');
SELECT harbor.find('products', '{"name": "3x"}') AS r1 \gset
SELECT is(:'r1'::jsonb #>> '{0,name}', '3x', 'type change back: find reads it as text');
COMMIT;

-- a key column changes type
BEGIN;
SELECT pg_temp.elsewhere('ALTER TABLE lddl.variants ALTER COLUMN product_id TYPE bigint');
SELECT harbor.get('products', 1, '{variants}') AS r1 \gset
SELECT harbor.load('variants', ARRAY[3], '{product}') AS r2 \gset
SELECT is(jsonb_path_query_array(:'r1'::jsonb, '$.variants[*].id'), '[1, 2]',
          'key type change: the relationship is loaded by the new key type');
SELECT is(:'r2'::jsonb #>> '{0,product,name}', '3x', 'key type change: and the other way');
COMMIT;

-- renamed and moved tables: the kept statements named the old table
BEGIN;
SELECT pg_temp.elsewhere('ALTER TABLE lddl.products RENAME TO goods');
SELECT harbor.load('variants', ARRAY[1], '{product}') AS r1 \gset
SELECT harbor.get('products', 2) AS r2 \gset
SELECT is(:'r1'::jsonb #>> '{0,product,name}', '3x', 'rename: a relationship target');
SELECT is(:'r2'::jsonb ->> 'name', '3x', 'rename: the root');
COMMIT;
BEGIN;
SELECT pg_temp.elsewhere('ALTER TABLE lddl.goods SET SCHEMA lddl2');
SELECT harbor.get('products', 1, '{brand, tags}') AS r1 \gset
SELECT is(:'r1'::jsonb #>> '{tags,1,label}', 'new', 'SET SCHEMA');
COMMIT;
BEGIN;
SELECT pg_temp.elsewhere('ALTER TABLE lddl.product_tags RENAME TO tagging');
SELECT harbor.get('products', 1, '{tags}') AS r1 \gset
SELECT is(:'r1'::jsonb #>> '{tags,0,label}', 'red', 'rename of an association table');
COMMIT;

-- renamed and dropped columns: the registry follows the other session's DDL
BEGIN;
SELECT pg_temp.elsewhere('ALTER TABLE lddl2.goods RENAME COLUMN name TO title');
SELECT harbor.get('products', 1) AS r1 \gset
SELECT is(:'r1'::jsonb ->> 'title', '3x', 'renamed column');
COMMIT;
BEGIN;
SELECT pg_temp.elsewhere('ALTER TABLE lddl2.goods DROP COLUMN title');
SELECT harbor.get('products', 1) AS r1 \gset
SELECT is(:'r1'::jsonb, '{"id": 1, "brand_id": 1}', 'dropped column');
COMMIT;

-- a dropped table: a clean error (42P01 from the loader's lock; 42704, no
-- such model, if the news came in first)
BEGIN;
SELECT pg_temp.elsewhere('DROP TABLE lddl.variants');
SELECT pg_temp.sqlstate_of($$SELECT harbor.get('variants', 1)$$) AS r1 \gset
SELECT ok(:'r1' IN ('42P01', '42704'), 'dropped table: a clean error');
COMMIT;
SELECT throws_ok($$SELECT harbor.get('products', 1, '{variants}')$$, '42704', NULL,
                 'dropped table: its relationships are gone in the next transaction');

-- DDL in a nested call, after the statements were prepared: the result
-- check reports it instead of reading a datum as the wrong type
CREATE FUNCTION lddl.retype() RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    IF (SELECT atttypid FROM pg_attribute WHERE attrelid = 'lddl.brands'::regclass AND attname = 'name') = 'text'::regtype THEN
        ALTER TABLE lddl.brands ALTER COLUMN name TYPE integer USING length(name);
    END IF;
    RETURN true;
END $$;
ALTER TABLE lddl2.goods ENABLE ROW LEVEL SECURITY;
ALTER TABLE lddl2.goods FORCE ROW LEVEL SECURITY;
CREATE POLICY retype ON lddl2.goods USING (lddl.retype());
CREATE ROLE lddl_owner;
GRANT USAGE ON SCHEMA lddl, lddl2 TO lddl_owner;
GRANT SELECT ON ALL TABLES IN SCHEMA lddl, lddl2 TO lddl_owner;
BEGIN;
SET LOCAL ROLE lddl_owner;
SELECT throws_ok($$SELECT harbor.get('products', 1, '{brand}')$$, '42804', NULL,
                 'a column type changed mid-call: datatype_mismatch, not a crash');
ROLLBACK;
SELECT is(harbor.get('products', 2, '{brand}') #>> '{brand,name}', 'Bolt', 'the next call reads the tables as they are');

SELECT * FROM finish();
DROP POLICY retype ON lddl2.goods;
DROP SCHEMA lddl, lddl2 CASCADE;
DROP OWNED BY lddl_owner;
DROP ROLE lddl_owner;
