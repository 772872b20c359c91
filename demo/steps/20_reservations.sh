#!/usr/bin/env bash
# Harbor Commerce: a limited-edition mug with 5 in stock and 20 shoppers
# checking out at the same moment.  Runs inside the demo cluster.
set -euo pipefail
q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

echo '== Stock reservations: 20 concurrent checkouts for a mug with 5 in stock'
mug=$(q -At <<'SQL'
SELECT harbor.enable_stock('variants', 'stock_qty');
INSERT INTO brands (name) VALUES ('Harbor Originals') ON CONFLICT DO NOTHING;
INSERT INTO products (sku, name, price_cents, brand_id)
     SELECT 'MUG-LTD-01', 'Lighthouse mug, limited edition', 2400, id FROM brands WHERE name = 'Harbor Originals';
INSERT INTO variants (product_id, size, stock_qty)
     SELECT id, 'one size', 5 FROM products WHERE sku = 'MUG-LTD-01'
  RETURNING id;
SQL
)
mug=$(echo "$mug" | tail -1)
echo "harbor.enable_stock('variants') marks variants.stock_qty as stock; variant $mug is the mug, stock_qty = 5."
echo

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for i in $(seq -w 1 20); do
  psql -X -At -v VERBOSITY=verbose -c "SELECT order_id FROM harbor.reserve_stock($mug, 1, 'order-$i', '15 minutes', 'variants')" \
    >"$out/$i" 2>&1 &
done
wait

ok=$(grep -l '^order-' "$out"/* | wc -l)
refused=$(grep -l "ERROR:  HB001" "$out"/* | wc -l)
echo "20 checkouts ran at once, each calling harbor.reserve_stock($mug, 1, 'order-NN'):"
echo "  reserved: $ok"
echo "  refused:  $refused, all with SQLSTATE HB001:"
grep -h -A1 'ERROR:' "$out"/* | head -2 | sed 's/^/    /'
echo

first=$(cat "$out"/* | grep '^order-' | sort | head -3)
a=$(echo "$first" | sed -n 1p); b=$(echo "$first" | sed -n 2p); c=$(echo "$first" | sed -n 3p)
echo "Payment succeeds for $a and $b, $c cancels:"
q -At -c "SELECT 'confirm_reservation(''$a'') = ' || harbor.confirm_reservation('$a')" \
      -c "SELECT 'confirm_reservation(''$b'') = ' || harbor.confirm_reservation('$b')" \
      -c "SELECT 'release_reservation(''$c'') = ' || harbor.release_reservation('$c')"
echo
echo "harbor.stock_status($mug): the released mug is back on sale, nothing oversold:"
q -c "SELECT * FROM harbor.stock_status($mug, 'variants')"
q -c "SELECT status, count(*) AS holds, sum(qty) AS mugs FROM harbor.stock_reservations
       WHERE model = 'variants' AND item_id = $mug GROUP BY status ORDER BY status"
echo "harbor.check_stock() finds no inconsistency:"
q -c "SELECT count(*) AS problems FROM harbor.check_stock()"
