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
# Each checkout is the harbor CLI (libharbor): one reserve_stock call per shopper.
for i in $(seq -w 1 20); do
  ( rc=0; harbor reserve "$mug" 1 "order-$i" --model variants >"$out/$i" 2>&1 || rc=$?
    echo "$rc" >"$out/$i.rc" ) &
done
wait

ok=$(cat "$out"/*.rc | grep -cx 0 || true)
refused=$(cat "$out"/*.rc | grep -cx 3 || true)
echo "20 checkouts ran at once, each running: harbor reserve $mug 1 order-NN --model variants"
echo "  reserved: $ok"
echo "  refused:  $refused with exit code 3 (insufficient stock, SQLSTATE HB001)"
other=$((20 - ok - refused))
[ "$other" -eq 0 ] || echo "  other failures: $other"
echo "  a refusal reads:"
# No pipe into head here or below: under pipefail a reader that stops
# early kills the writer with SIGPIPE and the step with exit code 141.
# The loops stop at what they need instead.
example=
reserved=()
for f in "$out"/*.rc; do
  rc=$(<"$f")
  if [ "$rc" = 3 ] && [ -z "$example" ]; then
    example=${f%.rc}
  elif [ "$rc" = 0 ] && [ "${#reserved[@]}" -lt 3 ]; then
    reserved+=("order-$(basename "$f" .rc)")
  fi
done
if [ -n "$example" ]; then
  sed 's/^/    /' "$example"
fi
echo

if [ "${#reserved[@]}" -lt 3 ]; then
  echo "(only ${#reserved[@]} checkouts reserved: nothing to confirm)"
  exit 1
fi
a=${reserved[0]}; b=${reserved[1]}; c=${reserved[2]}
echo "Payment succeeds for $a and $b, $c cancels:"
for cmd in "confirm $a" "confirm $b" "release $c"; do
  echo "\$ harbor $cmd"
  harbor $cmd
done
echo
echo "\$ harbor status $mug   (the released mug is back on sale, nothing oversold)"
harbor status "$mug" --model variants
echo
q -c "SELECT status, count(*) AS holds, sum(qty) AS mugs FROM harbor.stock_reservations
       WHERE model = 'variants' AND item_id = $mug GROUP BY status ORDER BY status"
echo "harbor.check_stock() finds no inconsistency:"
q -c "SELECT count(*) AS problems FROM harbor.check_stock()"
