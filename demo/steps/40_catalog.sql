\echo '== Catalog page: 50 products with brand, variants and tags in one harbor.load() call'
SET client_min_messages = warning;
-- demo catalog data (kept if earlier steps or runs inserted some)
INSERT INTO brands (name) VALUES ('Harbor Goods'), ('Tidewater'), ('Keel & Co')
    ON CONFLICT (name) DO NOTHING;
INSERT INTO tags (label) VALUES ('new'), ('sale'), ('organic'), ('gift')
    ON CONFLICT (label) DO NOTHING;
INSERT INTO products (sku, name, price_cents, brand_id)
SELECT format('HBR-CAT-%s', lpad(g::text, 3, '0')),
       (ARRAY['Mug', 'Tote', 'Cap', 'Scarf', 'Lamp'])[1 + g % 5] || ' no. ' || g,
       500 + (g * 173) % 4500,
       (SELECT id FROM brands ORDER BY id OFFSET g % 3 LIMIT 1)
  FROM generate_series(1, 60) g
    ON CONFLICT (sku) DO NOTHING;
INSERT INTO variants (product_id, size, stock_qty)
SELECT p.id, s.size, (p.id * 7 + s.n) % 25
  FROM products p
 CROSS JOIN (VALUES ('S', 1), ('M', 2), ('L', 3)) AS s(size, n)
 WHERE p.sku LIKE 'HBR-CAT-%'
   AND NOT EXISTS (SELECT 1 FROM variants v WHERE v.product_id = p.id);
INSERT INTO product_tags (product_id, tag_id)
SELECT p.id, t.id FROM products p JOIN tags t ON (p.id + t.id) % 3 = 0
 WHERE p.sku LIKE 'HBR-CAT-%'
    ON CONFLICT DO NOTHING;

CREATE TEMP TABLE catalog_page AS
SELECT harbor.load('products', ARRAY(SELECT id FROM products ORDER BY id LIMIT 50),
                   '{brand, variants, tags}') AS page;
\echo
\echo 'SELECT harbor.load(''products'', <50 ids>, ''{brand, variants, tags}''):'
SELECT jsonb_array_length(page) AS products,
       (SELECT sum(jsonb_array_length(p->'variants')) FROM jsonb_array_elements(page) p) AS variants,
       pg_size_pretty(octet_length(page::text)::bigint) AS payload
  FROM catalog_page;
\echo 'The first product of the page:'
SELECT page->0 AS first_product FROM catalog_page;
\echo 'harbor.last_load_stats(): one query for the roots and one per relationship, whatever the page'
\echo 'size; a tag shared by many products is built once (identity_hits):'
SELECT path, relationship, queries, rows_fetched, distinct_rows, identity_hits
  FROM jsonb_to_recordset(harbor.last_load_stats()->'paths')
       AS s(path text, relationship text, queries int, rows_fetched int, distinct_rows int, identity_hits int);
SELECT harbor.last_load_stats()->'queries' AS total_queries,
       harbor.last_load_stats()->'objects_built' AS objects_built;
