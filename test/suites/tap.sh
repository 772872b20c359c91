#!/usr/bin/env bash
# Perl TAP tests: t/*.pl with PostgreSQL::Test::Cluster from PGXS, run by
# `make installcheck` with only TAP_TESTS set (prove_installcheck).  The
# framework's initdb refuses to run as root, so as root the tests run as
# the postgres user in a copy of the tree that postgres owns.  On failure
# the end of each failing test's log (tmp_check/log/regress_log_*) is
# printed.
#
#   bash test/suites/tap.sh                           every t/*.pl
#   bash test/suites/tap.sh t/002_standby.pl          only the named tests
set -uo pipefail
cd "$(dirname "$0")/../.."
src=$(pwd)
bindir=/usr/lib/postgresql/15/bin

tests=()
for a in "$@"; do tests+=("$a"); done

work=$(mktemp -d /tmp/harbor_tap.XXXXXX)
keep=${HARBOR_TAP_KEEP:-}
trap '[ -n "$keep" ] || rm -rf "$work"' EXIT
tar -C "$src" -cf - Makefile harbor_orm.control META.json sql src t demo | tar -C "$work" -xf -

run=(make -s -C "$work" installcheck PG_CONFIG="$bindir/pg_config" REGRESS= ISOLATION=
     PROVE_FLAGS="--timer")
[ ${#tests[@]} -gt 0 ] && run+=("PROVE_TESTS=${tests[*]}")

# No PG* settings of the caller (pg_virtualenv's, a developer's) may leak
# into the clusters the tests create.
unset PGHOST PGPORT PGUSER PGDATABASE PGPASSWORD PGSERVICE PGDATA PG_CLUSTER_CONF_ROOT
if [ "$(id -u)" -eq 0 ]; then
  chown -R postgres: "$work"
  runuser -u postgres -- env HOME="$work" PATH="$bindir:$PATH" "${run[@]}"
else
  env PATH="$bindir:$PATH" "${run[@]}"
fi
rc=$?
if [ $rc -ne 0 ]; then
  for f in "$work"/tmp_check/log/regress_log_*; do
    [ -e "$f" ] || continue
    grep -q '^not ok' "$f" || continue
    echo "=================== end of $(basename "$f")"
    tail -n 60 "$f"
  done
  # the servers' own logs: crashes and errors from harbor
  for f in "$work"/tmp_check/log/*.log; do
    [ -e "$f" ] || continue
    if grep -qE 'terminated by signal|PANIC|XX000' "$f"; then
      echo "=================== $(basename "$f"): crashes and internal errors"
      grep -E -B2 -A4 'terminated by signal|PANIC|XX000' "$f" | head -n 80
    fi
  done
fi
exit $rc
