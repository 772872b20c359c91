#!/usr/bin/env bash
# The Python package (python/harbor_orm): its pytest suite against a throwaway
# cluster, with Debian's python3 and its packages (python3-psycopg,
# python3-psycopg2, python3-sqlalchemy, python3-pytest; no PyPI).
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh

PY=/usr/bin/python3
if ! "$PY" -c 'import psycopg, psycopg2, sqlalchemy, pytest' 2>/dev/null; then
  echo "not ok - $PY lacks psycopg, psycopg2, sqlalchemy or pytest (scripts/install_deps.sh installs them)"
  exit 1
fi

in_cluster -- env SQLALCHEMY_SILENCE_UBER_WARNING=1 PYTHONPATH="$PWD/python" PYTHONDONTWRITEBYTECODE=1 \
  "$PY" -m pytest -p no:cacheprovider -q -rs python/tests "$@"
