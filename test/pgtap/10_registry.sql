-- pgTAP: the registry's API surface, its security properties and its errors.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS harbor_orm;
SET client_min_messages = warning;
SELECT plan(41);

-- API surface
SELECT has_schema('harbor');
SELECT has_function('harbor', 'register_model', ARRAY['regclass', 'text']);
SELECT has_function('harbor', 'unregister_model', ARRAY['text']);
SELECT has_function('harbor', 'reflect', ARRAY['name']);
SELECT has_function('harbor', 'register_relationship', ARRAY['text', 'text', 'text', 'text[]', 'regclass', 'text']);
SELECT has_function('harbor', 'describe', ARRAY['text']);
SELECT has_function('harbor', 'check_models', '{}'::name[]);
SELECT has_view('harbor', 'models', 'view harbor.models');
SELECT has_view('harbor', 'relationships', 'view harbor.relationships');
SELECT function_returns('harbor', 'register_model', ARRAY['regclass', 'text'], 'text');
SELECT function_returns('harbor', 'reflect', ARRAY['name'], 'integer');
SELECT function_returns('harbor', 'describe', ARRAY['text'], 'jsonb');

-- every function has a fixed search_path, but for the loader's, whose
-- statements name every object by schema and which run under the caller's
-- path (sql/40_loader.sql runs them under a hostile one); only the event
-- trigger functions are SECURITY DEFINER
SELECT is_empty($$
    SELECT p.proname FROM pg_proc p
     WHERE p.pronamespace = 'harbor'::regnamespace
       AND p.proname NOT IN ('load', 'load_text', 'get', 'get_text', 'find', 'find_text')
       AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%')
       -- qualify everything they run instead (test/pgtap/21_reservations_search_path.sql)
       AND p.proname NOT IN ('reserve_stock', 'reserve_many', 'confirm_reservation',
                             'release_reservation', 'extend_reservation',
                             '_stamp_hold', '_hold_creditable')
$$, 'every other harbor function sets search_path');
SELECT is((SELECT array_agg(p.proname::text ORDER BY p.proname) FROM pg_proc p
             WHERE p.pronamespace = 'harbor'::regnamespace AND p.prosecdef),
          ARRAY['_on_ddl_end', '_on_sql_drop'], 'only the event trigger functions are SECURITY DEFINER');
SELECT ok(NOT has_function_privilege('public', 'harbor._on_ddl_end()', 'EXECUTE'),
          'PUBLIC cannot execute the event trigger function');
SELECT ok(NOT has_table_privilege('public', 'harbor.model', 'INSERT'),
          'PUBLIC cannot write the registry');
SELECT ok(has_table_privilege('public', 'harbor.models', 'SELECT'),
          'PUBLIC can read the registry');

-- a small schema
CREATE SCHEMA tap;
CREATE TABLE tap.authors (id int PRIMARY KEY, name text);
CREATE TABLE tap.books (id int PRIMARY KEY, author_id int REFERENCES tap.authors, editor_id int REFERENCES tap.authors);
CREATE TABLE tap.profiles (author_id int PRIMARY KEY REFERENCES tap.authors, bio text);
CREATE TABLE tap.genres (code text PRIMARY KEY);
CREATE TABLE tap.book_genres (book_id int REFERENCES tap.books, genre_code text REFERENCES tap.genres,
                              PRIMARY KEY (book_id, genre_code));
CREATE TABLE tap.loose (x int);
CREATE SEQUENCE tap.counter;

SELECT is(harbor.reflect('tap'), 5, 'reflect registers the five tables with a primary key');
SELECT is(harbor.register_model('tap.authors'), 'authors', 'registering again returns the name');
SELECT set_eq($$ SELECT name || ':' || kind || ':' || target FROM harbor.relationships WHERE model = 'authors' AND NOT ambiguous $$,
              ARRAY['profiles:one_to_one:profiles'],
              'authors: one-to-one to profiles; the two book FKs clash');
SELECT set_eq($$ SELECT name || ':' || kind FROM harbor.relationships WHERE model = 'books' $$,
              ARRAY['author:many_to_one', 'editor:many_to_one', 'book_genres:one_to_many', 'genres:many_to_many'],
              'books: two many-to-ones, the association rows and a many-to-many');
SELECT set_eq($$ SELECT name || ':' || kind FROM harbor.relationships WHERE model = 'genres' $$,
              ARRAY['book_genres:one_to_many', 'books:many_to_many'],
              'genres: many-to-many back to books named after the table');
SELECT is((SELECT count(*)::int FROM harbor.relationships WHERE model = 'authors' AND name = 'books' AND ambiguous), 2,
          'both candidates of the clashing name are kept as ambiguous');

-- errors and their SQLSTATEs
SELECT throws_ok($$ SELECT harbor.register_model('tap.loose') $$, '42P16', NULL, 'no primary key: 42P16');
SELECT throws_ok($$ SELECT harbor.register_model(NULL) $$, '22004', NULL, 'NULL relation: 22004');
SELECT throws_ok($$ SELECT harbor.register_model('tap.genres', '') $$, '22023', NULL, 'empty name: 22023');
SELECT throws_ok($$ SELECT harbor.register_model('tap.counter') $$, '42809', NULL, 'a sequence is not a table: 42809');
SELECT throws_ok($$ SELECT harbor.register_model('tap.genres', 'authors') $$, '42710', NULL, 'name of another table: 42710');
SELECT throws_ok($$ SELECT harbor.register_model('tap.genres', 'kinds') $$, '42710', NULL, 'table under a second name: 42710');
SELECT throws_ok($$ SELECT harbor.register_model('tap.authors_id_seq_missing') $$, '42P01', NULL, 'unknown table: 42P01');
SELECT throws_ok($$ SELECT harbor.describe('nobody') $$, '42704', 'model "nobody" does not exist', 'unknown model: 42704');
SELECT throws_ok($$ SELECT harbor.unregister_model('nobody') $$, '42704', NULL, 'unregister unknown: 42704');
SELECT throws_ok($$ SELECT harbor.register_relationship('authors', 'x', 'books') $$, '42P09', NULL, 'two FKs and none named: 42P09');
SELECT throws_ok($$ SELECT harbor.register_relationship('authors', 'x', 'genres') $$, '42830', NULL, 'no FK at all: 42830');
SELECT throws_ok($$ SELECT harbor.register_relationship('authors', 'x', 'books', '{nope}') $$, '42703', NULL, 'unknown column: 42703');
SELECT throws_ok($$ SELECT harbor.register_relationship('authors', 'x', 'books', kind => 'bad') $$, '22023', NULL, 'unknown kind: 22023');
SELECT throws_ok($$ SELECT harbor.reflect('nowhere') $$, '3F000', NULL, 'unknown schema: 3F000');

-- declaring resolves the ambiguity
SELECT lives_ok($$ SELECT harbor.register_relationship('authors', 'books', 'books', '{author_id}') $$, 'declare authors.books');
SELECT is((SELECT remote_columns FROM harbor.relationships WHERE model = 'authors' AND name = 'books'),
          ARRAY['author_id'], 'the declared relationship replaces the ambiguous pair');

-- drop keeps the registry in step, check_models agrees
DROP TABLE tap.book_genres;
SELECT is_empty($$ SELECT 1 FROM harbor.relationships WHERE kind = 'many_to_many' AND model IN ('books', 'genres') $$,
                'dropping the association table removes the many-to-many');
SELECT is_empty($$ SELECT * FROM harbor.check_models() $$, 'no drift');

SELECT * FROM finish();
ROLLBACK;
