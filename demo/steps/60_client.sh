#!/usr/bin/env bash
# Step 60: the same shop through the harbor CLI (built on libharbor): the
# registry, reservations with a refusal, the status, a catalog page, and
# the change notifications a cache would act on.
set -uo pipefail
export PATH=/usr/local/bin:$PATH
q() { psql -X -q -At -v ON_ERROR_STOP=1 -c "$1"; }
run() {
  local out='$'
  for a in "$@"; do
    case "$a" in *[[:space:]\'\"\{\}]*) out+=" '$a'" ;; *) out+=" $a" ;; esac
  done
  echo "$out"
  "$@"
}

echo "== The harbor command-line tool (on libharbor): the same shop, no SQL typed"
echo
run harbor models | sed -n '1,/^([0-9]* rows)$/p'

q "SELECT harbor.enable_stock('variants')
    WHERE NOT EXISTS (SELECT 1 FROM harbor.stock_models WHERE model = 'variants')" >/dev/null
item=$(q "SELECT id FROM variants WHERE stock_qty BETWEEN 3 AND 20 ORDER BY stock_qty, id LIMIT 1")
if [ -z "$item" ]; then
  echo "(no variant with a few items in stock: nothing to reserve)"
  exit 0
fi
stock=$(q "SELECT stock_qty FROM variants WHERE id = $item")
other=$(q "SELECT id FROM variants WHERE stock_qty > 5 AND id <> $item ORDER BY id LIMIT 1")

echo
echo "Change notifications on for variants.  Any role that can connect may LISTEN, so"
echo "by default they carry no keys; the shop's cache needs them, and the owner of"
echo "variants chooses to send them, on a channel of their own:"
echo "  SELECT harbor.enable_change_notify('variants', channel => 'variants_changes', payload => 'keys');"
q "SELECT harbor.enable_change_notify('variants', channel => 'variants_changes', payload => 'keys')" >/dev/null
echo "'harbor listen --channel variants_changes' waits for them in the background."
listen_out=$(mktemp)
# Five committed statements change variants below (A's hold, C's two lines,
# C's release of both); the listener stops after them, the timeout only
# bounds a run that went wrong.
harbor listen --channel variants_changes --count 5 --timeout 20 > "$listen_out" 2>&1 &
listener=$!
for _ in $(seq 1 50); do
  [ "$(q "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN \"variants_changes\"'")" = 1 ] && break
  sleep 0.1
done

echo
echo "Variant $item has $stock in stock.  Checkout A takes 2; checkout B asks for $((stock - 1)):"
run harbor reserve "$item" 2 web-A --ttl "10 minutes"
run harbor reserve "$item" $((stock - 1)) web-B
echo "(exit code $? = insufficient stock; B's attempt changed nothing)"
echo
echo "Checkout C reserves two lines at once (all or none), then cancels; A pays:"
run harbor reserve-many web-C "$item:1" "$other:2"
run harbor release web-C
run harbor confirm web-A

wait "$listener"
echo
echo "What 'harbor listen' printed: one line per committed statement on variants,"
echo "with the ids a cache would drop (B's refused attempt sent nothing):"
sed 's/^/  /' "$listen_out"
rm -f "$listen_out"

echo
run harbor status
echo
run harbor status "$item"
echo
echo "A catalog page in one call (harbor.find with variants included):"
run harbor find products --include variants --order-by id --limit 5
echo
echo "The same objects as JSON for a program:"
run harbor --json get products 1 --include brand --include variants | cut -c1-240
q "SELECT harbor.disable_change_notify('variants')" >/dev/null
