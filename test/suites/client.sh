#!/usr/bin/env bash
# libharbor and the harbor CLI against a throwaway cluster: the C test
# program directly (under valgrind) and through a PgBouncer in transaction
# pooling mode, the CLI's output and exit codes, and the example program of
# docs/client.md compiled against the installed library with pkg-config.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh

fail=0
make -s -C src/client all test_client PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config >/dev/null || exit 1

echo "== docs/client.md example compiles with pkg-config"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
awk '/^```c$/ {on = 1; next} /^```$/ {if (on) exit} on' docs/client.md > "$tmp/example.c"
if [ -s "$tmp/example.c" ] &&
   cc -std=c11 -Wall -Wextra -Werror -o "$tmp/example" "$tmp/example.c" $(pkg-config --cflags --libs harbor); then
  echo "ok - example.c compiled"
else
  echo "not ok - example.c does not compile"; fail=1
fi

export HARBOR_TMP="$tmp"
in_cluster -- bash test/client/in_cluster.sh || fail=1
exit $fail
