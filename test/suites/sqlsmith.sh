#!/usr/bin/env bash
# SQLsmith against harbor_orm, in a throwaway cluster: the demo schema
# (demo/schema.sql) with rows, registered with harbor.reflect, stock kept on
# variants and change notifications on products and variants.  SQLsmith's
# random queries call harbor's functions with random arguments (its view of
# pg_proc is narrowed to them and a few builtins, see below).  Asserts:
#  - the server did not crash (no "terminated by signal" in the log, and it
#    still accepts connections);
#  - no statement calling a harbor function failed with SQLSTATE XX000
#    (every error a user can cause must carry a proper SQLSTATE).
# Reproducers of what it finds are saved under /tmp/harbor_sqlsmith.*.
#
#   bash test/suites/sqlsmith.sh                      bounded run (seeded)
#   HARBOR_SQLSMITH_QUERIES=200000 bash test/suites/sqlsmith.sh   longer run
#   HARBOR_SQLSMITH_SEED=7 ...                         another seed
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh

if [ "${1:-}" != inside ]; then
  in_cluster -o 'log_line_prefix=%m [%p] %e ' -o log_min_error_statement=error \
             -o statement_timeout=5s -o track_functions=all -o harbor_orm.sweeper_databases=harbor_smith \
             -o harbor_orm.sweep_interval=1s -- bash "$0" inside
  exit $?
fi

queries=${HARBOR_SQLSMITH_QUERIES:-6000}
seed=${HARBOR_SQLSMITH_SEED:-9}
out=$(mktemp -d /tmp/harbor_sqlsmith.XXXXXX)
log=$(ls "$(dirname "$PG_CLUSTER_CONF_ROOT")"/log/*.log)
fail=0

createdb harbor_smith
psql -X -q -v ON_ERROR_STOP=1 -d harbor_smith >/dev/null <<SQL || { echo "setup failed"; exit 1; }
SET client_min_messages = warning;
CREATE EXTENSION harbor_orm;
\i demo/schema.sql
INSERT INTO brands (name) VALUES ('Anchor'), ('Bosun'), ('Compass');
INSERT INTO products (sku, name, price_cents, brand_id)
SELECT 'SKU-' || g, 'product ' || g, 100 * g, 1 + g % 3 FROM generate_series(1, 30) g;
INSERT INTO variants (product_id, size, stock_qty)
SELECT p, s, 50 FROM generate_series(1, 30) p, unnest(ARRAY['S', 'M', 'L']) s;
INSERT INTO tags (label) VALUES ('new'), ('sale'), ('limited');
INSERT INTO product_tags SELECT p, 1 + p % 3 FROM generate_series(1, 30) p;
INSERT INTO orders VALUES ('order-1', 'ann'), ('order-2', 'bob');
INSERT INTO order_items VALUES ('order-1', 1, 2), ('order-2', 4, 1);
SELECT harbor.reflect('public');
CREATE SCHEMA smith;
SELECT harbor.enable_stock('variants', 'stock_qty');
SELECT harbor.enable_change_notify('products');
SELECT harbor.enable_change_notify('variants');
SELECT harbor.reserve_stock(v, 1, 'order-' || v, '2 seconds') FROM generate_series(1, 20) v;
SELECT harbor.reserve_stock(v, 2, 'long-' || v, '1 hour') FROM generate_series(21, 40) v;

-- Arguments worth passing: SQLsmith takes values from the columns of the
-- tables it queries, so a table of real model names, filters, include paths
-- and ids makes its harbor calls reach past argument checking.
CREATE TABLE smith_args (id serial PRIMARY KEY, model text, filter jsonb, include text[],
                         ids int[], order_by text[], ttl interval, rel regclass, order_id text);
INSERT INTO smith_args (model, filter, include, ids, order_by, ttl, rel, order_id) VALUES
  ('products', '{"price_cents": {"lt": 900}}', '{brand, variants, tags}', '{1, 2, 3}', '{price_cents desc}', '1 second', 'products', 'order-1'),
  ('variants', '{"stock_qty": {"gte": 1}}', '{product.brand}', '{4, 5, 99}', '{stock_qty, id desc}', '1 hour', 'variants', 'long-21'),
  ('brands', '{}', '{products.variants.product}', '{}', '{name}', '-1 day', 'brands', ''),
  ('tags', '{"label": {"in": ["new", "sale"]}}', '{products}', NULL, NULL, NULL, 'tags', 'order-2'),
  ('orders', '{"customer": {"like": "a%"}}', '{order_items.variant}', '{1}', '{created_at}', '10 minutes', 'orders', 'order-3'),
  ('nope', '{"missing": 1}', '{nope}', '{-1}', '{nope}', '0 seconds', 'order_items', NULL);
-- The loader's polymorphic functions (anyarray, anyelement) are out of
-- SQLsmith's reach; these wrappers give it concrete types.
CREATE FUNCTION smith.harbor_load(model text, ids int[], include text[]) RETURNS jsonb
    LANGUAGE sql AS 'SELECT harbor.load(model, ids, include)';
CREATE FUNCTION smith.harbor_get(model text, id int, include text[]) RETURNS jsonb
    LANGUAGE sql AS 'SELECT harbor.get(model, id, include)';
CREATE FUNCTION smith.harbor_get_text(model text, id text, include text[]) RETURNS jsonb
    LANGUAGE sql AS 'SELECT harbor.get(model, id, include)';

-- SQLsmith reads the functions it may call from an unqualified pg_proc.
-- A schema ahead of pg_catalog in its search_path narrows that to harbor's
-- functions (all but those that only tear the fixture down or manage the
-- worker) and a few builtins that build their argument types.
CREATE VIEW smith.pg_proc AS
SELECT * FROM pg_catalog.pg_proc p
 WHERE p.pronamespace = 'smith'::regnamespace
    OR (p.pronamespace = 'harbor'::regnamespace
        AND p.proname NOT IN ('unregister_model', 'unregister_relationship', 'disable_change_notify',
                              'start_sweeper', 'stop_sweeper'))
    OR (p.pronamespace = 'pg_catalog'::regnamespace
        AND p.proname IN ('jsonb_build_object', 'jsonb_build_array', 'to_jsonb', 'array_append',
                          'string_to_array', 'make_interval', 'int8', 'int4', 'text', 'lower',
                          'count', 'max', 'min', 'sum', 'jsonb_agg', 'array_agg', 'coalesce'));
ALTER ROLE CURRENT_USER IN DATABASE harbor_smith SET search_path = smith, pg_catalog, public;
SQL

start_time=$(psql -X -qAt -d harbor_smith -c 'SELECT pg_postmaster_start_time()')
log_start=$(stat -c %s "$log")
echo "== sqlsmith: $queries queries, seed $seed"
timeout $(( 60 + queries / 10 )) sqlsmith --target="dbname=harbor_smith" --exclude-catalog \
  --seed="$seed" --max-queries="$queries" >"$out/sqlsmith.out" 2>"$out/sqlsmith.err"
rc=$?
tail -n 3 "$out/sqlsmith.err" | tr '\r' '\n' | tail -n 3
if [ $rc -ne 0 ]; then
  echo "not ok - sqlsmith exited with $rc (output in $out)"
  fail=1
fi
tail -c +"$((log_start + 1))" "$log" >"$out/server.log"

# The run must have called harbor's functions, or it proved nothing:
# calls that returned (track_functions = all counts C functions too; names
# starting with _ are the sweeper's and triggers') plus statements that
# failed in a call (the log has them).
echo "# server log: $(grep -c ' ERROR: ' "$out/server.log") errors"
done_calls=$(psql -X -qAt -d harbor_smith \
          -c "SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions
               WHERE schemaname = 'harbor' AND funcname !~ '^_'")
failed_calls=$(grep -oE 'harbor[._][a-z][a-z_]*\(' "$out/server.log" | wc -l)
calls=$((done_calls + failed_calls))
echo "# harbor functions: $done_calls calls returned," \
  $(psql -X -qAt -d harbor_smith -c "SELECT string_agg(funcname || ' ' || calls, ', ' ORDER BY calls DESC)
                                      FROM pg_stat_user_functions WHERE schemaname = 'harbor' AND funcname !~ '^_' AND calls > 0")
echo "# $failed_calls calls in failed statements:" \
  $(grep -oE 'harbor[._][a-z][a-z_]*\(' "$out/server.log" | sort | uniq -c | sort -rn | awk '{printf "%s %s, ", $2, $1}')
if [ "${calls:-0}" -lt 100 ]; then
  echo "not ok - hardly any harbor function was called"; fail=1
fi

if psql -X -qAt -d harbor_smith -c 'SELECT 1' >/dev/null 2>&1 &&
   [ "$(psql -X -qAt -d harbor_smith -c 'SELECT pg_postmaster_start_time()')" = "$start_time" ]; then
  echo "ok - the server is up and was not restarted"
else
  echo "not ok - the server is down or was restarted"; fail=1
fi

if grep -qE 'terminated by signal|all server processes terminated|PANIC:' "$out/server.log"; then
  echo "not ok - the server crashed; reproducers in $out/crash_*.sql"
  # the query of each crashed backend: the DETAIL line and its continuations
  perl -ne '
    BEGIN { $dir = shift }
    if (/DETAIL:  Failed process was running: (.*)/) { $q = "$1\n"; $in = 1; next }
    if ($in && /^\t(.*)/) { $q .= "$1\n"; next }
    if ($in) { $n++; open my $f, ">", "$dir/crash_$n.sql"; print $f $q, ";\n"; close $f; $in = 0 }
    END { if ($in) { $n++; open my $f, ">", "$dir/crash_$n.sql"; print $f $q, ";\n"; close $f } }
  ' "$out" "$out/server.log"
  grep -E -A1 'terminated by signal' "$out/server.log" | head -n 10
  fail=1
else
  echo "ok - no crash"
fi

# XX000 errors: the message, and the statement (with its continuation
# lines) that the same backend logged after it, one tab-separated line each.
perl -ne '
  sub flush { if (defined $stmt) { print "$msg\t$stmt\n"; undef $stmt } }
  if (/^\S+ \S+ \S+ \[(\d+)\] XX000 ERROR:  (.*)/) { flush(); $err{$1} = $2; next }
  if (/^\S+ \S+ \S+ \[(\d+)\] XX000 STATEMENT:  (.*)/ && exists $err{$1}) {
    flush(); $msg = delete $err{$1}; $stmt = $2; next
  }
  if (defined $stmt && /^\t(.*)/) { $stmt .= " $1"; next }
  flush();
  END { flush() }' "$out/server.log" >"$out/xx000.tsv"
grep -i 'harbor\.' "$out/xx000.tsv" >"$out/xx000_harbor.tsv" || true
others=$(grep -vci 'harbor\.' "$out/xx000.tsv" || true)
[ "${others:-0}" -gt 0 ] && echo "# $others XX000 errors from statements that call no harbor function (PostgreSQL's own), in $out/xx000.tsv"
if [ -s "$out/xx000_harbor.tsv" ]; then
  echo "not ok - internal errors (XX000) from harbor calls; reproducers in $out/xx000_*.sql"
  n=0
  while IFS=$'\t' read -r msg stmt; do
    n=$((n + 1))
    printf -- '-- ERROR (XX000): %s\n%s;\n' "$msg" "$stmt" >"$out/xx000_$n.sql"
  done <"$out/xx000_harbor.tsv"
  cut -f1 "$out/xx000_harbor.tsv" | sort | uniq -c | sort -rn | head -n 20
  fail=1
else
  echo "ok - no XX000 from a harbor call"
fi
if [ "$(psql -X -qAt -d harbor_smith -c 'SELECT count(*) FROM harbor.check_models()')" != 0 ]; then
  echo "# note: harbor.check_models() reports drift after the run (sqlsmith may alter rows, not DDL)"
fi
echo "# sqlsmith output and the server log of the run: $out"
exit $fail
