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

# the package installs offline into a venv that sees Debian's packages
venv=$(mktemp -d)
if "$PY" -m venv --system-site-packages "$venv/v" >/dev/null 2>&1 &&
   "$venv/v/bin/pip" install -q --no-index --no-build-isolation ./python >"$venv/pip.log" 2>&1 &&
   (cd / && "$venv/v/bin/python" -c 'import harbor_orm, harbor_orm.sqlalchemy, harbor_orm.aio
assert harbor_orm.__file__.startswith("'"$venv"'")'); then
  echo "ok - pip install --no-index --no-build-isolation ./python into a --system-site-packages venv"
  venv_ok=0
else
  echo "not ok - offline install into a venv"; cat "$venv/pip.log"
  venv_ok=1
fi
rm -rf "$venv" python/build python/harbor_orm.egg-info   # what the in-tree build leaves

# from python/: the repository root holds harbor_orm.so, the server module,
# which Python would otherwise try to import as the package
cd python
in_cluster -- env SQLALCHEMY_SILENCE_UBER_WARNING=1 PYTHONPATH="$PWD" PYTHONDONTWRITEBYTECODE=1 \
  "$PY" -m pytest -p no:cacheprovider -q -rs tests "$@"
rc=$?
[ $rc -eq 0 ] && [ $venv_ok -eq 0 ]
