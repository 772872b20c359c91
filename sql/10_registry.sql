-- Mapped-model registry: registration, discovery, declared relationships,
-- introspection, drift and DDL.
CREATE EXTENSION IF NOT EXISTS harbor_orm;
SET client_min_messages = warning;
CREATE SCHEMA reg;
SET search_path = reg, public;
\set VERBOSITY default

CREATE TABLE brands (id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE products (
    id serial PRIMARY KEY,
    sku text NOT NULL UNIQUE,
    brand_id integer REFERENCES brands (id)
);
CREATE TABLE variants (
    id serial PRIMARY KEY,
    product_id integer NOT NULL REFERENCES products (id),
    size text,
    stock_qty integer NOT NULL DEFAULT 0
);
-- one-to-one: the FK is also the primary key
CREATE TABLE product_details (
    product_id integer PRIMARY KEY REFERENCES products (id),
    description text
);
-- many-to-many through an association table
CREATE TABLE tags (id serial PRIMARY KEY, label text);
CREATE TABLE product_tags (
    product_id integer REFERENCES products (id),
    tag_id integer REFERENCES tags (id),
    PRIMARY KEY (product_id, tag_id)
);
-- self-reference
CREATE TABLE categories (
    id serial PRIMARY KEY,
    parent_id integer REFERENCES categories (id),
    name text
);
-- an ambiguous pair: two FKs from shipments to ports
CREATE TABLE ports (id serial PRIMARY KEY, code text);
CREATE TABLE shipments (
    id serial PRIMARY KEY,
    from_port_id integer REFERENCES ports (id),
    to_port_id integer REFERENCES ports (id)
);
-- composite keys
CREATE TABLE warehouses (region text, code text, PRIMARY KEY (region, code));
CREATE TABLE bins (
    id serial PRIMARY KEY,
    region text, code text,
    FOREIGN KEY (region, code) REFERENCES warehouses (region, code)
);
CREATE TABLE no_pk (a integer);
CREATE VIEW product_view AS SELECT * FROM products;

-- registration
SELECT harbor.register_model('products');
SELECT harbor.register_model('products');                  -- idempotent
SELECT harbor.register_model('reg.variants', 'variants');
SELECT name, relation, primary_key, columns, column_types FROM harbor.models ORDER BY name;
SELECT model, name, kind, target, local_columns, remote_columns FROM harbor.relationships ORDER BY model, name;

-- errors
SELECT harbor.register_model('no_pk');
SELECT harbor.register_model('product_view');
SELECT harbor.register_model(NULL);
SELECT harbor.register_model('brands', '');
SELECT harbor.register_model('brands', 'a.b');
SELECT harbor.register_model('brands', 'products');        -- name used by another table
SELECT harbor.register_model('products', 'goods');         -- table already registered
SELECT harbor.register_model('does_not_exist');
SELECT count(*) AS models_after_errors FROM harbor.models;

-- reflect registers the rest of the schema
SELECT harbor.reflect('reg');
SELECT harbor.reflect('no_such_schema');
SELECT harbor.reflect(NULL);
SELECT name, primary_key FROM harbor.models ORDER BY name;
SELECT model, name, kind, target, local_columns, remote_columns, secondary,
       secondary_local_columns, secondary_remote_columns, ambiguous
  FROM harbor.relationships ORDER BY model, name, constraint_name;

-- describe
SELECT jsonb_pretty(harbor.describe('product_details'));
SELECT harbor.describe('nope');

-- declared relationships
SELECT harbor.register_relationship('shipments', 'origin', 'ports', '{from_port_id}');
SELECT harbor.register_relationship('ports', 'departures', 'shipments', '{from_port_id}');
SELECT harbor.register_relationship('ports', 'arrivals', 'shipments', '{to_port_id}');
SELECT harbor.register_relationship('categories', 'children', 'categories', '{parent_id}', kind => 'one_to_many');
SELECT harbor.register_relationship('products', 'labels', 'tags', secondary => 'product_tags');
SELECT model, name, kind, target, local_columns, remote_columns, secondary, explicit, ambiguous
  FROM harbor.relationships
 WHERE model IN ('shipments', 'ports', 'categories') OR name = 'labels'
 ORDER BY model, name, constraint_name;
-- declaring over an ambiguous name resolves it
SELECT harbor.register_relationship('ports', 'shipments', 'shipments', '{to_port_id}');
SELECT model, name, kind, explicit, ambiguous FROM harbor.relationships
 WHERE model = 'ports' ORDER BY name;
SELECT harbor.unregister_relationship('ports', 'shipments');
SELECT harbor.unregister_relationship('ports', 'shipments');
SELECT model, name, ambiguous FROM harbor.relationships WHERE model = 'ports' ORDER BY name, constraint_name;

-- declared relationships without a constraint: matching types
CREATE TABLE audit (id serial PRIMARY KEY, product_ref integer, note text);
SELECT harbor.register_model('audit');
SELECT harbor.register_relationship('audit', 'subject', 'products', '{product_ref}');
SELECT harbor.register_relationship('products', 'audits', 'audit', '{product_ref}');
SELECT model, name, kind, local_columns, remote_columns, constraint_name
  FROM harbor.relationships WHERE model IN ('audit', 'products') AND explicit ORDER BY model, name;

-- declared relationship errors
SELECT harbor.register_relationship('audit', 'bad', 'products', '{note}');
SELECT harbor.register_relationship('audit', 'bad', 'products', '{nope}');
SELECT harbor.register_relationship('audit', 'bad', 'brands');
SELECT harbor.register_relationship('ports', 'bad', 'shipments');
SELECT harbor.register_relationship('categories', 'bad', 'categories', '{parent_id}');
SELECT harbor.register_relationship('nope', 'bad', 'brands');
SELECT harbor.register_relationship('audit', 'bad', 'nope');
SELECT harbor.register_relationship('audit', 'bad', 'brands', kind => 'sideways');
SELECT harbor.register_relationship('audit', 'bad', 'brands', '{}');
SELECT harbor.register_relationship('audit', NULL, 'brands');
SELECT harbor.register_relationship('audit', 'bad.name', 'brands');
SELECT harbor.register_relationship('products', 'bad', 'tags', secondary => 'brands');
SELECT harbor.register_relationship('products', 'bad', 'tags', kind => 'many_to_many');
SELECT harbor.unregister_relationship('nope', 'x');
SELECT count(*) AS declared FROM harbor.relationships WHERE explicit;

-- DDL keeps the registry in step
ALTER TABLE variants ADD COLUMN color text;
ALTER TABLE variants RENAME COLUMN size TO size_label;
ALTER TABLE variants ALTER COLUMN stock_qty TYPE bigint;
SELECT columns, column_types FROM harbor.models WHERE name = 'variants';
ALTER TABLE variants DROP COLUMN color;
SELECT columns FROM harbor.models WHERE name = 'variants';
-- a new FK becomes a relationship; dropping it removes it
ALTER TABLE variants ADD COLUMN brand_id integer REFERENCES brands (id);
SELECT model, name, kind FROM harbor.relationships WHERE target = 'brands' OR model = 'brands' ORDER BY model, name;
ALTER TABLE variants DROP COLUMN brand_id;
SELECT model, name, kind FROM harbor.relationships WHERE target = 'brands' OR model = 'brands' ORDER BY model, name;
-- a unique index turns one_to_many into one_to_one
CREATE UNIQUE INDEX audit_product_ref_key ON audit (product_ref);
ALTER TABLE audit ADD FOREIGN KEY (product_ref) REFERENCES products (id);
SELECT model, name, kind FROM harbor.relationships WHERE model = 'products' AND target = 'audit' ORDER BY name;
DROP INDEX audit_product_ref_key;
SELECT model, name, kind FROM harbor.relationships WHERE model = 'products' AND target = 'audit' ORDER BY name;
-- dropping a table removes its model and every relationship to it
DROP TABLE product_tags;
SELECT count(*) AS product_tags_models FROM harbor.models WHERE name = 'product_tags';
SELECT model, name FROM harbor.relationships WHERE secondary IS NOT NULL OR target = 'product_tags' OR model = 'product_tags';
SELECT * FROM harbor.check_models();

-- drift, with the event triggers switched off
ALTER EVENT TRIGGER harbor_ddl_end DISABLE;
ALTER TABLE brands ADD COLUMN country text;
ALTER TABLE brands ALTER COLUMN name TYPE varchar(80);
ALTER TABLE bins DROP CONSTRAINT bins_region_code_fkey;
ALTER TABLE variants DROP CONSTRAINT variants_pkey;
SELECT * FROM harbor.check_models();
ALTER EVENT TRIGGER harbor_ddl_end ENABLE;
ALTER TABLE variants ADD PRIMARY KEY (id);
SELECT harbor.register_model('brands');
ALTER TABLE bins ADD FOREIGN KEY (region, code) REFERENCES warehouses (region, code);
SELECT * FROM harbor.check_models();
-- a renamed column under a declared relationship is reported, not guessed
ALTER TABLE audit RENAME COLUMN product_ref TO product_ref_old;
SELECT * FROM harbor.check_models();
ALTER TABLE audit RENAME COLUMN product_ref_old TO product_ref;
SELECT * FROM harbor.check_models();

-- partitioned tables
CREATE TABLE events (id bigint, at date, product_id integer REFERENCES products (id),
                     PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
SELECT harbor.register_model('events');
SELECT harbor.register_model('events_2026');
SELECT model, name, kind, target FROM harbor.relationships WHERE model = 'events' OR target = 'events' ORDER BY model, name;

-- unregister
SELECT harbor.unregister_model('events');
SELECT harbor.unregister_model('events');
SELECT harbor.unregister_model(NULL);
SELECT harbor.unregister_relationship('products', NULL);
SELECT harbor.describe(NULL);
SELECT count(*) FROM harbor.relationships WHERE model = 'events' OR target = 'events';

-- privileges: the registry is written only by those allowed to
CREATE ROLE harbor_reg_reader;
ALTER TABLE no_pk ADD PRIMARY KEY (a);
GRANT USAGE ON SCHEMA reg TO harbor_reg_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA reg TO harbor_reg_reader;
SET ROLE harbor_reg_reader;
SELECT count(*) > 0 AS can_read_models FROM harbor.models;
SELECT harbor.register_model('reg.no_pk');
SELECT harbor.register_model('reg.ports', 'harbors');
SELECT harbor.unregister_model('tags');
SELECT harbor.register_relationship('audit', 'subject2', 'products', '{product_ref}');
SELECT (harbor.describe('products'))->>'name' AS reader_can_describe;
RESET ROLE;
SELECT count(*) AS tags_models FROM harbor.models WHERE relation = 'reg.tags'::regclass;

-- identifiers that need quoting, and names that would break include paths
CREATE TABLE "My Shop.Items" ("Item Id" int PRIMARY KEY, "name""x" text);
CREATE TABLE "odd lines" (id int PRIMARY KEY, "item.ref id" int REFERENCES "My Shop.Items",
                          "Weird_id" int REFERENCES "My Shop.Items");
SELECT harbor.register_model('"My Shop.Items"');
SELECT harbor.register_model('"odd lines"');
SELECT harbor.register_model('"odd lines"', E'x\ty');
SELECT harbor.register_model('"odd lines"', repeat('x', 64));
SELECT model, name, kind, local_columns, remote_columns, ambiguous FROM harbor.relationships
 WHERE model IN ('My_Shop_Items', 'odd_lines') ORDER BY model, name, local_columns;
SELECT * FROM harbor.check_models();

-- clean up
DROP SCHEMA reg CASCADE;
SELECT count(*) AS models_left FROM harbor.models;
DROP ROLE harbor_reg_reader;
RESET search_path;

-- one statement, two calls: the second sees what the first wrote
CREATE SCHEMA twice;
CREATE TABLE twice.brands (id int PRIMARY KEY, name text);
CREATE TABLE twice.items (id int PRIMARY KEY, brand_id int REFERENCES twice.brands, stock_qty int);
SELECT harbor.reflect('twice') BETWEEN 2 AND 3 AS reflect_twice;
SELECT harbor.reflect('twice') AS again, harbor.reflect('twice') AS and_again;
SELECT harbor.unregister_model('items'), harbor.register_model('twice.items');
SELECT name, relation FROM harbor.models WHERE relation::text LIKE 'twice.%' ORDER BY 1;

-- a name is never re-pointed at another table
CREATE TABLE twice.other_items (id int PRIMARY KEY);
SELECT harbor.register_model('twice.other_items', 'items');
SELECT name, relation, columns FROM harbor.models WHERE name = 'items';
DROP SCHEMA twice CASCADE;
