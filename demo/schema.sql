-- Harbor Commerce: the catalog and orders of the worked example.
CREATE TABLE brands (
    id    serial PRIMARY KEY,
    name  text NOT NULL UNIQUE
);
CREATE TABLE products (
    id          serial PRIMARY KEY,
    sku         varchar(32) NOT NULL UNIQUE,
    name        varchar(200) NOT NULL,
    price_cents integer NOT NULL,
    brand_id    integer REFERENCES brands (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON products (brand_id);
CREATE TABLE variants (
    id          serial PRIMARY KEY,
    product_id  integer NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    size        varchar(16) NOT NULL,
    stock_qty   integer NOT NULL DEFAULT 0 CHECK (stock_qty >= 0)
);
CREATE INDEX ON variants (product_id);
CREATE TABLE tags (
    id    serial PRIMARY KEY,
    label text NOT NULL UNIQUE
);
CREATE TABLE product_tags (
    product_id integer REFERENCES products (id) ON DELETE CASCADE,
    tag_id     integer REFERENCES tags (id) ON DELETE CASCADE,
    PRIMARY KEY (product_id, tag_id)
);
CREATE INDEX ON product_tags (tag_id);
CREATE TABLE orders (
    id          text PRIMARY KEY,
    customer    text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE order_items (
    order_id   text REFERENCES orders (id) ON DELETE CASCADE,
    variant_id integer REFERENCES variants (id),
    qty        integer NOT NULL CHECK (qty > 0),
    PRIMARY KEY (order_id, variant_id)
);
CREATE INDEX ON order_items (variant_id);
