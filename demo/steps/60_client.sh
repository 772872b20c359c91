#!/usr/bin/env bash
# Step 60: the same story through the harbor CLI (built on libharbor):
# the registry, reservations with a refusal, the status, a catalog page,
# and the change notifications a cache would act on.
set -uo pipefail
export PATH=/usr/local/bin:$PATH
q() { psql -X -q -At -v ON_ERROR_STOP=1 -c "$1"; }
run() { echo "\$ $*"; "$@"; }

echo "== The harbor command-line tool: the same shop, no SQL typed"
echo
run harbor models | sed -n '1,/^$/p'

# the scarcest variant in stock plays the limited-edition mug
item=$(q "SELECT id FROM variants WHERE stock_qty > 0 ORDER BY stock_qty, id LIMIT 1")
if [ -z "$item" ]; then
  echo "(no variant in stock: nothing to reserve)"
  exit 0
fi
stock=$(q "SELECT stock_qty FROM variants WHERE id = $item")
q "SELECT harbor.enable_change_notify('variants')" >/dev/null
echo
echo "Change notifications are on for variants; a listener waits for them in the background:"
harbor listen --count 3 --timeout 10 > /tmp/harbor_demo_listen.$$ 2>&1 &
listener=$!
for _ in $(seq 1 50); do
  [ "$(q "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN harbor_changes%'")" = 1 ] && break
  sleep 0.1
done

echo
echo "Variant $item has $stock in stock.  Two checkouts reserve one each, a third asks for everything:"
run harbor reserve "$item" 1 cli-order-1 --ttl "10 minutes"
run harbor reserve "$item" 1 cli-order-2 --ttl "10 minutes"
run harbor reserve "$item" "$stock" cli-order-3
echo "(exit code $?: 3 means insufficient stock; nothing was changed)"
run harbor release cli-order-2

wait "$listener"
echo
echo "What the listener printed (one line per committed statement; a cache drops these ids):"
sed 's/^/  /' /tmp/harbor_demo_listen.$$
rm -f /tmp/harbor_demo_listen.$$

echo
run harbor status
echo
echo "A catalog page in one call (harbor find, variants included):"
run harbor find products --include variants --order-by id --limit 5
echo
echo "The same as JSON for a program (first 300 bytes):"
echo "\$ harbor --json load products 1 2 --include variants --include brand"
harbor --json load products 1 2 --include variants --include brand | cut -c1-300
harbor release cli-order-1 >/dev/null
q "SELECT harbor.disable_change_notify('variants')" >/dev/null
