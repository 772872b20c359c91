-- harbor.load / get / find / last_load_stats: shapes, batching, security, SQLSTATEs.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS harbor_orm;
SET client_min_messages = warning;
SELECT plan(66);

CREATE SCHEMA ltap;
CREATE TABLE ltap.brands (id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE ltap.products (id serial PRIMARY KEY, sku text NOT NULL, price_cents integer NOT NULL,
                            brand_id integer REFERENCES ltap.brands (id));
CREATE TABLE ltap.variants (id serial PRIMARY KEY, product_id integer NOT NULL REFERENCES ltap.products (id),
                            size text NOT NULL);
CREATE INDEX ON ltap.variants (product_id);
CREATE TABLE ltap.tags (id serial PRIMARY KEY, label text NOT NULL);
CREATE TABLE ltap.product_tags (product_id integer REFERENCES ltap.products (id),
                                tag_id integer REFERENCES ltap.tags (id), PRIMARY KEY (product_id, tag_id));
CREATE TABLE ltap.details (product_id integer PRIMARY KEY REFERENCES ltap.products (id), body text);
CREATE TABLE ltap.bins (aisle text, slot integer, PRIMARY KEY (aisle, slot));
CREATE TABLE ltap.placements (id serial PRIMARY KEY, aisle text, slot integer,
                              FOREIGN KEY (aisle, slot) REFERENCES ltap.bins (aisle, slot));
INSERT INTO ltap.brands (name) VALUES ('Acme'), ('Bolt');
INSERT INTO ltap.products (sku, price_cents, brand_id)
SELECT 'P' || g, g * 10, 1 + g % 2 FROM generate_series(1, 1200) g;
INSERT INTO ltap.variants (product_id, size)
SELECT p, s FROM generate_series(1, 1200) p, unnest('{S,M}'::text[]) s ORDER BY p, s;
INSERT INTO ltap.tags (label) VALUES ('red'), ('blue');
INSERT INTO ltap.product_tags VALUES (1, 2), (1, 1), (2, 1);
INSERT INTO ltap.details VALUES (1, 'one');
INSERT INTO ltap.bins VALUES ('A', 1), ('A', 2);
INSERT INTO ltap.placements (aisle, slot) VALUES ('A', 1), ('A', 1), ('A', 2);
SELECT harbor.reflect('ltap');

-- shapes
SELECT is(jsonb_path_query_array(harbor.load('products', ARRAY[3, 1, 3, NULL, 999999]), '$[*].id'),
          '[3, 1]', 'roots come in the order of ids, duplicates, NULLs and unknown ids dropped');
SELECT is(harbor.load('products', '{}'::int[]), '[]', 'empty ids give an empty array');
SELECT is(harbor.load('products', NULL::int[]), '[]', 'NULL ids give an empty array');
SELECT is(harbor.load('products', ARRAY[1], '{variants}') -> 0 -> 'variants',
          (SELECT jsonb_agg(to_jsonb(v) ORDER BY v.id) FROM ltap.variants v WHERE v.product_id = 1),
          'one_to_many: an array ordered by the target key');
SELECT is(harbor.load('products', ARRAY[1], '{brand}') -> 0 -> 'brand', '{"id": 2, "name": "Bolt"}',
          'many_to_one: an object');
SELECT is(jsonb_path_query_array(harbor.load('products', ARRAY[1, 3], '{tags}'), '$[*].tags[*].label'),
          '["red", "blue"]', 'many_to_many: through the association table, ordered by target key');
SELECT is(harbor.load('products', ARRAY[3], '{tags}') -> 0 -> 'tags', '[]', 'to-many with no rows: []');
SELECT is(harbor.load('products', ARRAY[1, 2], '{details}') -> 0 -> 'details', '{"body": "one", "product_id": 1}',
          'one_to_one: an object');
SELECT is(harbor.load('products', ARRAY[2], '{details}') -> 0 -> 'details', 'null', 'one_to_one without a row: null');
SELECT is(harbor.load('products', ARRAY[1], '{}') -> 0, (SELECT to_jsonb(p) FROM ltap.products p WHERE id = 1),
          'an object holds every mapped column as to_jsonb renders it');
SELECT is(harbor.load('variants', ARRAY[1], '{product.brand}') #> '{0,product,brand,name}', '"Bolt"',
          'nested many_to_one path');
SELECT is(jsonb_array_length(harbor.load('bins', ARRAY[ROW('A', 1)], '{placements}') -> 0 -> 'placements'), 2,
          'composite foreign key, one_to_many side');
SELECT is(harbor.load('placements', ARRAY[3], '{bins}') #> '{0,bins}', '{"slot": 2, "aisle": "A"}',
          'composite foreign key, many_to_one side');
SELECT is(harbor.get('products', 2) ->> 'sku', 'P2', 'get returns one object');
SELECT is(harbor.get('products', 0), NULL, 'get of an unknown id returns NULL');
SELECT is(jsonb_path_query_array(harbor.find('products', '{"price_cents": {"lt": 40}, "sku": {"like": "P%"}}',
          order_by => '{price_cents desc}'), '$[*].id'), '[3, 2, 1]', 'find filters and orders');
SELECT is(jsonb_path_query_array(harbor.find('products', '{"brand_id": {"in": [1]}}', lim => 2, offs => 1),
          '$[*].id'), '[4, 6]', 'find with in, limit and offset');

-- load_text: the same result as load, as the text load()::text gives
CREATE FUNCTION pg_temp.text_matches(m text, ids anyarray, inc text[] DEFAULT '{}') RETURNS boolean
    LANGUAGE sql AS $$
    SELECT harbor.load_text(m, ids, inc)::jsonb = harbor.load(m, ids, inc)
       AND harbor.load_text(m, ids, inc) = harbor.load(m, ids, inc)::text $$;
SELECT ok(pg_temp.text_matches('products', ARRAY[3, 1, 3, NULL, 999999]), 'load_text: order, duplicates, NULLs, unknown ids');
SELECT is(harbor.load_text('products', '{}'::int[]), '[]', 'load_text: empty ids give []');
SELECT is(harbor.load_text('products', NULL::int[]), '[]', 'load_text: NULL ids give []');
SELECT ok(pg_temp.text_matches('products', ARRAY(SELECT generate_series(1, 60)), '{variants, brand, tags, details}'),
          'load_text: every kind of relationship');
SELECT ok(pg_temp.text_matches('variants', ARRAY(SELECT generate_series(1, 40)), '{product.brand, product.tags.products}'),
          'load_text: nested includes and shared targets');
SELECT ok(pg_temp.text_matches('bins', ARRAY[ROW('A', 2), ROW('A', 1)], '{placements.bins}'),
          'load_text: composite keys both ways');
SELECT ok(pg_temp.text_matches('products', ARRAY[1, 2]::bigint[], '{variants.product.variants}'),
          'load_text: converted ids and a cycle');
INSERT INTO ltap.brands (name) VALUES (E'ünï \u00e9 ✓ 😀 "q" \\ \n\t\u0001');
SELECT ok(pg_temp.text_matches('brands', ARRAY[3, 1]), 'load_text: unicode and escapes');
SELECT is(harbor.load_text('brands', ARRAY[3])::jsonb -> 0 ->> 'name', E'ünï \u00e9 ✓ 😀 "q" \\ \n\t\u0001',
          'load_text: a string reads back as it was');
SELECT is(harbor.get_text('bins', ROW('A', 1), '{placements}'), harbor.get('bins', ROW('A', 1), '{placements}')::text,
          'get_text: the text get()::text gives');
SELECT is(harbor.get_text('products', 0), NULL, 'get_text of an unknown id returns NULL');
SELECT is(harbor.find_text('products', '{"brand_id": {"in": [1]}}', '{variants, tags}', '{price_cents desc}', 5, 2),
          harbor.find('products', '{"brand_id": {"in": [1]}}', '{variants, tags}', '{price_cents desc}', 5, 2)::text,
          'find_text: the text find()::text gives');
SELECT throws_ok($$SELECT harbor.load_text('nope', ARRAY[1])$$, '42704', NULL, 'load_text: unknown model');
SET LOCAL harbor_orm.load_max_rows = 50;
SELECT throws_ok($$SELECT harbor.load_text('products', ARRAY(SELECT generate_series(1, 20)), '{variants}')$$, '54000', NULL,
                 'load_text: more rows than load_max_rows');
RESET harbor_orm.load_max_rows;
SELECT is(harbor.last_load_stats() ->> 'function', NULL, 'load_text: no statistics after an error');

-- batching and the identity map
SELECT harbor.load('variants', ARRAY(SELECT generate_series(1, 100)), '{product.brand}');
SELECT is((harbor.last_load_stats() #>> '{paths,2,rows_fetched}')::int, 2,
          'many_to_one targets shared by many parents are fetched once');
SELECT harbor.load('products', ARRAY(SELECT generate_series(1, 10)), '{variants.product.variants}');
SELECT is(harbor.last_load_stats() -> 'queries', '2', 'a cycle back to loaded rows costs no query');
SELECT is((harbor.last_load_stats() #>> '{paths,2,identity_hits}')::int, 20, 'the cycle is served by the identity map');
SET LOCAL harbor_orm.load_chunk_size = 1000;
SELECT harbor.load('products', ARRAY(SELECT generate_series(1, 10)), '{variants, brand, tags, details}');
SELECT is(harbor.last_load_stats() -> 'queries', '5', '10 ids: one query for the roots and one per path');
SELECT harbor.load('products', ARRAY(SELECT generate_series(1, 1000)), '{variants, brand, tags, details}');
SELECT is(harbor.last_load_stats() -> 'queries', '5', '1,000 ids: the same number of queries');
RESET harbor_orm.load_chunk_size;
SET LOCAL harbor_orm.load_chunk_size = 250;
SELECT harbor.load('products', ARRAY(SELECT generate_series(1, 1000)), '{variants}');
SELECT is(harbor.last_load_stats() -> 'queries', '8', 'chunks of 250 keys: 4 queries per level');
RESET harbor_orm.load_chunk_size;

-- errors and their SQLSTATEs
SELECT throws_ok($$SELECT harbor.load('nope', ARRAY[1])$$, '42704', NULL, 'unknown model');
SELECT throws_ok($$SELECT harbor.load('products', ARRAY[1], '{variants.nope}')$$, '42704', NULL, 'unknown path segment');
SELECT throws_ok($$SELECT harbor.load(NULL, ARRAY[1])$$, '22004', NULL, 'NULL model');
SELECT throws_ok($$SELECT harbor.load('products', ARRAY[1], '{variants..product}')$$, '22023', NULL, 'empty path segment');
SELECT throws_ok($$SELECT harbor.load('products', ARRAY['x'])$$, '42804', NULL, 'ids of the wrong type');
SELECT throws_ok($$SELECT harbor.load('products', ARRAY[1.5])$$, '22P02', NULL, 'ids that do not convert');
SELECT throws_ok($$SELECT harbor.load('bins', ARRAY[1])$$, '42804', NULL, 'scalar ids for a composite key');
SELECT throws_ok($$SELECT harbor.find('products', '{"colour": 1}')$$, '42703', NULL, 'filter on an unknown column');
SELECT throws_ok($$SELECT harbor.find('products', '{"id": {"near": 1}}')$$, '22023', NULL, 'unknown filter operator');
SELECT throws_ok($$SELECT harbor.find('products', '{"id": {"ilike": "1"}}')$$, '42883', NULL, 'like on a non-text column');
SELECT throws_ok($$SELECT harbor.find('products', '"x"')$$, '22023', NULL, 'filter that is not an object');
SELECT throws_ok($$SELECT harbor.find('products', order_by => '{colour}')$$, '42703', NULL, 'order_by an unknown column');
SELECT throws_ok($$SELECT harbor.find('products', order_by => '{id sideways}')$$, '22023', NULL, 'order_by a bad direction');
SET LOCAL harbor_orm.max_include_depth = 1;
SELECT throws_ok($$SELECT harbor.load('products', ARRAY[1], '{variants.product}')$$, '54001', NULL,
                 'include deeper than max_include_depth');
RESET harbor_orm.max_include_depth;
SET LOCAL harbor_orm.load_max_rows = 50;
SELECT throws_ok($$SELECT harbor.load('products', ARRAY(SELECT generate_series(1, 20)), '{variants}')$$, '54000', NULL,
                 'more rows than load_max_rows');
RESET harbor_orm.load_max_rows;
CREATE TABLE ltap.swaps (id serial PRIMARY KEY, a_id integer REFERENCES ltap.products (id),
                         b_id integer REFERENCES ltap.products (id));
SELECT harbor.register_model('ltap.swaps');
SELECT throws_ok($$SELECT harbor.load('products', ARRAY[1], '{swaps}')$$, '42P09', NULL, 'ambiguous relationship');
SELECT lives_ok($$SELECT harbor.load('products', ARRAY[1], '{brand}')$$, 'loading works again after errors');

-- privileges and row-level security
CREATE ROLE ltap_reader;
GRANT USAGE ON SCHEMA ltap TO ltap_reader;
GRANT SELECT ON ltap.products, ltap.variants, ltap.brands TO ltap_reader;
ALTER TABLE ltap.variants ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_small ON ltap.variants FOR SELECT USING (size = 'S');
SELECT is(jsonb_array_length(harbor.load('variants', ARRAY[1, 2, 3, 4])), 4,
          'the owner bypasses the policy (and the plan is now cached)');
SET LOCAL ROLE ltap_reader;
SELECT is(jsonb_path_query_array(harbor.load('products', ARRAY[1], '{variants}'), '$[*].variants[*].size'),
          '["S"]', 'row-level security hides rows of a relationship');
SELECT is(jsonb_array_length(harbor.load('variants', ARRAY[1, 2, 3, 4])), 2, 'row-level security hides roots, though the plan was cached by the owner');
SELECT is(harbor.load_text('products', ARRAY[1, 2], '{variants}'), harbor.load('products', ARRAY[1, 2], '{variants}')::text,
          'load_text: row-level security applies as to load');
SELECT throws_ok($$SELECT harbor.load('products', ARRAY[1], '{tags}')$$, '42501', NULL,
                 'a table without SELECT privilege cannot be loaded');
SELECT throws_ok($$SELECT harbor.find('details')$$, '42501', NULL, 'find needs SELECT privilege too');
RESET ROLE;
SELECT is(jsonb_array_length(harbor.load('variants', ARRAY[1, 2, 3, 4])), 4, 'the owner sees every row');

-- the catalog, not the registry's snapshot, decides how a column is read
SET LOCAL session_replication_role = replica;
ALTER TABLE ltap.brands ALTER COLUMN name TYPE integer USING length(name);
ALTER TABLE ltap.tags RENAME COLUMN label TO title;
RESET session_replication_role;
SELECT is(harbor.get('brands', 1) -> 'name', '4', 'a type change the registry did not hear of: read as the new type');
SELECT is(harbor.load('products', ARRAY[2], '{brand}') #> '{0,brand,name}', '4', 'also as a relationship target');
SELECT throws_ok($$SELECT harbor.get('tags', 1)$$, '42703', NULL,
                 'a renamed column the registry did not hear of: undefined_column');
SELECT harbor.register_model('ltap.tags');
SELECT is(harbor.get('tags', 1) ->> 'title', 'red', 'refreshing the model reads the new name');

SELECT * FROM finish();
ROLLBACK;
