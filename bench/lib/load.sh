# Loading workloads (sourced by bench/run.sh).
#
# Data (demo/schema.sql): LOAD_PRODUCTS products (default 10,000), 4 variants
# each (variant ids 4(p-1)+1 .. 4p of product p), 8 brands, 24 tags, and
# order_items on two variants in three.  A page is N consecutive products
# at a random offset, given to every strategy as
# ARRAY(SELECT generate_series(:a, :a + N - 1)).
#   level 1: products with their variants      include '{variants}'
#   level 2: ... and each variant's order lines include '{variants, variants.order_items}'
# Strategies:
#   n1        N+1: the page query, one variants query per product (and, at
#             level 2, one order_items query per variant)
#   selectin  one query per level returning rows (= ANY), as selectinload
#   json_agg  the hand-written single statement: json_agg + LATERAL
#   load      SELECT harbor.load('products', ids, include)
#   load_text SELECT harbor.load_text(...) when that function exists

load_setup() {
  local products=${LOAD_PRODUCTS:-10000}
  psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<SQL
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS harbor_orm;
\i $BENCH_DIR/../demo/schema.sql
INSERT INTO brands (name) SELECT 'brand ' || g FROM generate_series(1, 8) g;
INSERT INTO products (sku, name, price_cents, brand_id, created_at)
SELECT 'SKU-' || lpad(g::text, 6, '0'), 'Product number ' || g, 100 + (g * 37) % 9900,
       1 + g % 8, timestamptz '2026-01-01' + g * interval '1 hour'
  FROM generate_series(1, $products) g;
INSERT INTO variants (id, product_id, size, stock_qty)
SELECT 4 * (p - 1) + k, p, (ARRAY['S','M','L','XL'])[k], (p * 7 + k) % 50
  FROM generate_series(1, $products) p, generate_series(1, 4) k;
SELECT setval('variants_id_seq', 4 * $products);
INSERT INTO tags (label) SELECT 'tag ' || g FROM generate_series(1, 24) g;
INSERT INTO product_tags SELECT p, 1 + (p + k * 7) % 24 FROM generate_series(1, $products) p, generate_series(0, 2) k;
INSERT INTO orders (id, customer) SELECT 'o' || g, 'customer ' || (g % 997) FROM generate_series(1, 20000) g;
INSERT INTO order_items (order_id, variant_id, qty)
SELECT 'o' || (1 + v % 20000), v, 1 + v % 3 FROM generate_series(1, 4 * $products) v WHERE v % 3 <> 0;
VACUUM ANALYZE;
SELECT harbor.reflect();
SQL
}

load_has_text() { has_function 'harbor.load_text(text,anyarray,text[])'; }

# load_scripts DIR N LEVEL: DIR/<strategy>-<N>-l<LEVEL>.sql
load_scripts() {
  local w=$1 n=$2 level=$3 i k
  local products=${LOAD_PRODUCTS:-10000}
  local page="\\set a random(0, $(( products / n - 1 ))) * $n + 1"
  local ids="ARRAY(SELECT pg_catalog.generate_series(:a, :a + $(( n - 1 ))))"
  local vids="ARRAY(SELECT pg_catalog.generate_series(4 * (:a - 1) + 1, 4 * (:a + $(( n - 1 )))))"
  local include='{variants}'
  [ "$level" = 2 ] && include='{variants, variants.order_items}'
  local f="$w/%s-$n-l$level.sql"

  { echo "$page"
    echo "SELECT * FROM products WHERE id = ANY ($ids) ORDER BY id;"
    for i in $(seq 0 $(( n - 1 ))); do
      echo "\\set p :a + $i"
      echo "SELECT * FROM variants WHERE product_id = :p ORDER BY id;"
      if [ "$level" = 2 ]; then
        for k in 1 2 3 4; do
          echo "\\set v 4 * (:p - 1) + $k"
          echo "SELECT * FROM order_items WHERE variant_id = :v ORDER BY order_id, variant_id;"
        done
      fi
    done; } >"$(printf "$f" n1)"

  { echo "$page"
    echo "SELECT * FROM products WHERE id = ANY ($ids) ORDER BY id;"
    echo "SELECT * FROM variants WHERE product_id = ANY ($ids) ORDER BY product_id, id;"
    [ "$level" = 2 ] &&
      echo "SELECT * FROM order_items WHERE variant_id = ANY ($vids) ORDER BY variant_id, order_id;"
  } >"$(printf "$f" selectin)"

  local vsel="SELECT v.* FROM variants v"
  [ "$level" = 2 ] && vsel="SELECT v.*, coalesce((SELECT json_agg(oi ORDER BY oi.order_id, oi.variant_id)
                                      FROM order_items oi WHERE oi.variant_id = v.id), '[]') AS order_items
                         FROM variants v"
  cat >"$(printf "$f" json_agg)" <<SQL
$page
SELECT coalesce(json_agg(x ORDER BY x.id), '[]') FROM (
  SELECT p.*, coalesce(v.variants, '[]') AS variants
    FROM products p
    LEFT JOIN LATERAL (SELECT json_agg(vv ORDER BY vv.id) AS variants
                         FROM ($vsel WHERE v.product_id = p.id) vv) v ON true
   WHERE p.id = ANY ($ids)) x;
SQL
  printf '%s\n' "$page" "SELECT harbor.load('products', $ids, '$include');" >"$(printf "$f" load)"
  printf '%s\n' "$page" "SELECT harbor.load_text('products', $ids, '$include');" >"$(printf "$f" load_text)"
}

# load_workloads DIR: LOAD_SIZES (50 500 5000) x levels (1 2) x LOAD_NETS
# (direct proxy), 1 client, and 4 clients at 50 roots direct; LOAD_SECONDS
# per run.  N+1 through the proxy is left out above 500 roots (one page
# would take 5,001 or 25,001 emulated round trips of 0.5 ms), and so is N+1
# at 5,000 roots with two levels direct (25,001 queries, about 5 s a page):
# both would cost minutes of the run's budget for a figure whose ratio the
# smaller pages already show.
load_workloads() {
  local w=$1 n level net port c s
  local strategies="n1 selectin json_agg load"
  load_has_text && strategies+=" load_text"
  for n in ${LOAD_SIZES:-50 500 5000}; do
    for level in 1 2; do
      load_scripts "$w" "$n" "$level"
      local warm=${WARMUP:-1}
      for net in ${LOAD_NETS:-direct proxy}; do
        if [ "$net" = proxy ]; then port=$PROXY_PORT; else port=$PGPORT; fi
        for c in 1 4; do
          [ "$c" = 4 ] && { [ "$n" != 50 ] || [ "$net" != direct ]; } && continue
          local args=()
          for s in $strategies; do
            [ "$s" = n1 ] && [ "$n" -gt 500 ] && { [ "$net" = proxy ] || [ "$level" = 2 ]; } && continue
            args+=("$s=$w/$s-$n-l$level.sql")
          done
          WARMUP=$warm run_group "load_${n}_level$level" "$net" "$c" "$port" "${LOAD_SECONDS:-1}" "${args[@]}"
          warm=0
        done
      done
    done
  done
}
