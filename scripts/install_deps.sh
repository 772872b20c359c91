#!/usr/bin/env bash
# Installs what building, testing and running harbor_orm needs on Debian 12:
# PostgreSQL 15 with its server headers (which carry PGXS's pg_regress,
# pg_isolation_regress and the PostgreSQL::Test Perl modules), pgTAP and
# pg_prove, libpq, PgBouncer (for the client's pooling tests), valgrind,
# IPC::Run and prove (for the Perl TAP tests), SQLsmith, and Debian's Python
# packages for python/ (psycopg 3, psycopg2, SQLAlchemy, pytest, venv).
# Does nothing when all is there.
#
#   scripts/install_deps.sh               what building and testing need
#   scripts/install_deps.sh --packaging   what building the Debian packages
#                                         needs (debhelper, pg_buildext from
#                                         postgresql-server-dev-all, lintian);
#                                         the debs suite asks for these itself
set -euo pipefail

packages=(
  build-essential
  pkg-config
  postgresql-15
  postgresql-server-dev-15
  postgresql-15-pgtap
  postgresql-15-plproxy
  libpq-dev
  libtap-parser-sourcehandler-pgtap-perl
  pgbouncer
  valgrind
  python3-sqlalchemy
  python3-psycopg
  python3-psycopg2
  python3-pytest
  python3-venv
  libipc-run-perl
  perl
  sqlsmith
)
if [ "${1:-}" = --packaging ]; then
  packages=(
    build-essential
    dpkg-dev
    fakeroot
    debhelper
    postgresql-server-dev-all
    libpq-dev
    pkg-config
    lintian
  )
fi

missing=()
for p in "${packages[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "== installing: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "not root: install these Debian packages first: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts a default cluster on install; the project only uses throwaway ones.
pg_ctlcluster 15 main stop 2>/dev/null || true
