#!/usr/bin/env bash
# Benchmark of harbor.load() against the usual ways to load a catalog page.
#
#   bash bench/load.sh            build, install, run in a throwaway cluster
#
# Data: 2,500 products x 4 variants, 8 brands (many-to-one, few distinct
# values), 24 tags (many-to-many, 3 per product).  A page is 50 consecutive
# products at a random offset; every approach gets the same page ids as
# ARRAY(SELECT generate_series(:a, :a + 49)) and returns the page with its
# variants, through pgbench -M prepared, 1 client and 4 clients:
#   (a) N+1: the page query, then one variants query per product
#   (b) selectin: two queries returning rows (products, then variants = ANY)
#   (c) the best hand-written single-statement JSON query (json_agg + LATERAL;
#       the faster of a json and a jsonb variant is reported)
#   (d) SELECT harbor.load('products', ids, '{variants}')
# Then rows/s and payload size of harbor.load for 50, 500 and 5,000 roots.
# Raw pgbench output goes to bench/results/.  BENCH_SECONDS (default 10)
# sets the duration of each run.
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/lib/common.sh
if [ "${1:-}" != "--inside" ]; then
  bench_cluster "$0" --inside -- -o shared_buffers=256MB -o max_connections=50
fi

bench_database harbor_bench

psql -X -q -v ON_ERROR_STOP=1 <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION harbor_orm;
\i demo/schema.sql
INSERT INTO brands (name) SELECT 'brand ' || g FROM generate_series(1, 8) g;
INSERT INTO products (sku, name, price_cents, brand_id, created_at)
SELECT 'SKU-' || lpad(g::text, 5, '0'), 'Product number ' || g, 100 + (g * 37) % 9900,
       1 + g % 8, timestamptz '2026-01-01' + g * interval '1 hour'
  FROM generate_series(1, 2500) g;
INSERT INTO variants (product_id, size, stock_qty)
SELECT p, s, (p * 7 + length(s)) % 50
  FROM generate_series(1, 2500) p, unnest('{S,M,L,XL}'::text[]) s;
INSERT INTO tags (label) SELECT 'tag ' || g FROM generate_series(1, 24) g;
INSERT INTO product_tags SELECT p, 1 + (p + k * 7) % 24 FROM generate_series(1, 2500) p, generate_series(0, 2) k;
VACUUM ANALYZE;
SELECT harbor.reflect() \gset
SQL

page='\set a random(0, 49) * 50 + 1'
ids='ARRAY(SELECT pg_catalog.generate_series(:a, :a + 49))'

{ echo "$page"
  echo "SELECT * FROM products WHERE id = ANY ($ids) ORDER BY id;"
  for i in $(seq 0 49); do
    echo "\\set p$i :a + $i"
    echo "SELECT * FROM variants WHERE product_id = :p$i ORDER BY id;"
  done; } > "$W/a.sql"
cat > "$W/b.sql" <<SQL
$page
SELECT * FROM products WHERE id = ANY ($ids) ORDER BY id;
SELECT * FROM variants WHERE product_id = ANY ($ids) ORDER BY product_id, id;
SQL
cat > "$W/c_json.sql" <<SQL
$page
SELECT coalesce(json_agg(x ORDER BY x.id), '[]') FROM (
  SELECT p.*, coalesce(v.variants, '[]') AS variants
    FROM products p
    LEFT JOIN LATERAL (SELECT json_agg(v ORDER BY v.id) AS variants
                         FROM variants v WHERE v.product_id = p.id) v ON true
   WHERE p.id = ANY ($ids)) x;
SQL
cat > "$W/c_jsonb.sql" <<SQL
$page
SELECT coalesce(jsonb_agg(x ORDER BY x.id), '[]') FROM (
  SELECT p.*, coalesce(v.variants, '[]') AS variants
    FROM products p
    LEFT JOIN LATERAL (SELECT jsonb_agg(v ORDER BY v.id) AS variants
                         FROM variants v WHERE v.product_id = p.id) v ON true
   WHERE p.id = ANY ($ids)) x;
SQL
cat > "$W/d.sql" <<SQL
$page
SELECT harbor.load('products', $ids, '{variants}');
SQL

# Same output check: (c) and (d) must return the same JSON for a page.
same=$(psql -X -At -c "SELECT (SELECT coalesce(jsonb_agg(x ORDER BY x.id), '[]') FROM (
  SELECT p.*, coalesce(v.variants, '[]') AS variants FROM products p
    LEFT JOIN LATERAL (SELECT jsonb_agg(v ORDER BY v.id) AS variants FROM variants v WHERE v.product_id = p.id) v ON true
   WHERE p.id = ANY (ARRAY(SELECT generate_series(101, 150)))) x)
  = harbor.load('products', ARRAY(SELECT generate_series(101, 150)), '{variants}')")
echo "hand-written JSON and harbor.load agree on a page: $same"

tps() {  # tps <script> <clients>
  local name; name=$(basename "$1" .sql)
  "$PGBENCH" -n -M prepared -T "$SECS" -c "$2" -j "$(( $2 < 2 ? 1 : 2 ))" -f "$1" > "$OUT/load_${name}_c$2.txt" 2>&1
  sed -n '/^tps = /{s/^tps = \([0-9.]*\).*/\1/p;q}' "$OUT/load_${name}_c$2.txt"
}

printf '\n%-44s %12s %12s\n' "page of 50 products with variants" "1 client" "4 clients"
declare -A R
for s in a b c_json c_jsonb d; do
  for c in 1 4; do R[$s,$c]=$(tps "$W/$s.sql" $c); done
done
label() { case $1 in a) echo "(a) N+1 (51 queries)";; b) echo "(b) selectin, 2 queries returning rows";;
  c_json) echo "(c) hand-written json_agg + LATERAL";; c_jsonb) echo "(c') hand-written jsonb_agg + LATERAL";;
  d) echo "(d) harbor.load";; esac; }
for s in a b c_json c_jsonb d; do
  printf '%-44s %10.0f/s %10.0f/s\n' "$(label $s)" "${R[$s,1]}" "${R[$s,4]}"
done
best_c() { awk -v x="$1" -v y="$2" 'BEGIN { print (x > y ? x : y) }'; }
for c in 1 4; do
  bc=$(best_c "${R[c_json,$c]}" "${R[c_jsonb,$c]}")
  awk -v d="${R[d,$c]}" -v c="$bc" -v a="${R[a,$c]}" -v b="${R[b,$c]}" -v n="$c" 'BEGIN {
    printf "ratios, %d client(s): (d)/(c best) = %.2fx (target 1.5x), (d)/(a) = %.1fx (target 8x), (d)/(b) = %.2fx\n",
           n, d / c, d / a, d / b }'
done

printf '\n%-10s %14s %14s %14s %14s\n' "roots" "loads/s" "rows/s" "payload bytes" "hand JSON/s"
for n in 50 500 5000; do
  cat > "$W/d$n.sql" <<SQL
\\set a random(0, $(( (10000 - n) / n ))) * $n + 1
SELECT harbor.load('variants', ARRAY(SELECT pg_catalog.generate_series(:a, :a + $n - 1)), '{product.brand}');
SQL
  cat > "$W/c$n.sql" <<SQL
\\set a random(0, $(( (10000 - n) / n ))) * $n + 1
SELECT coalesce(json_agg(x ORDER BY x.id), '[]') FROM (
  SELECT v.*, (SELECT row_to_json(pp) FROM (SELECT p.*, (SELECT row_to_json(b) FROM brands b WHERE b.id = p.brand_id) AS brand
                                              FROM products p WHERE p.id = v.product_id) pp) AS product
    FROM variants v WHERE v.id = ANY (ARRAY(SELECT pg_catalog.generate_series(:a, :a + $n - 1)))) x;
SQL
  t=$(tps "$W/d$n.sql" 1)
  tc=$(tps "$W/c$n.sql" 1)
  bytes=$(psql -X -At -c "SELECT length(harbor.load('variants', ARRAY(SELECT generate_series(1, $n)), '{product.brand}')::text)")
  objs=$(psql -X -At -c "SELECT harbor.load('variants', ARRAY(SELECT generate_series(1, $n)), '{product.brand}') IS NOT NULL; SELECT harbor.last_load_stats()->>'objects_built'" | tail -1)
  printf '%-10s %12.0f/s %12.0f/s %14s %12.0f/s\n' "$n" "$t" "$(awk -v t="$t" -v o="$objs" 'BEGIN{print t*o}')" "$bytes" "$tc"
done
echo "(roots are variants with product.brand: 3 objects per root; rows/s counts objects built)"
echo "stats of one 50-product page:"
psql -X -At -c "SELECT harbor.load('products', ARRAY(SELECT generate_series(1, 50)), '{variants}') IS NOT NULL" \
            -c "SELECT harbor.last_load_stats()" | tail -1
