-- Data for the client tests: a stock model and a small catalog.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS harbor_orm;
CREATE SCHEMA client_t;
CREATE TABLE client_t.products (
    id   integer PRIMARY KEY,
    name text NOT NULL
);
CREATE TABLE client_t.items (
    id         bigint PRIMARY KEY,
    product_id integer REFERENCES client_t.products (id),
    label      text,
    stock_qty  integer NOT NULL CHECK (stock_qty >= 0)
);
INSERT INTO client_t.products VALUES (1, 'Harbor mug'), (2, 'Tote bag');
INSERT INTO client_t.items
SELECT g, 1 + g % 2, 'item ' || g, 100 FROM generate_series(1, 20) g;
UPDATE client_t.items SET stock_qty = 3 WHERE id = 1;
SELECT harbor.register_model('client_t.products', 'ct_products');
SELECT harbor.register_model('client_t.items', 'ct_items');
