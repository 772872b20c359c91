#!/usr/bin/env bash
# Benchmark of the Python package against the seed's SQLAlchemy patterns,
# 8 threads each with its own Session (python/bench/bench.py):
#   - the seed's reserve flow (with_for_update, decrement, insert, commit)
#     against harbor_orm.reserve_stock, on one hot item and on 10,000 items;
#   - a selectinload page of 50 products (variants, brand, tags) against
#     harbor_orm.sqlalchemy.load.
# Prints reservations and pages per second with the ratios, from one run.
#
#   bash bench/python.sh        build, install, run in a throwaway cluster
# THREADS (8) and DURATION (seconds per run, 5) may be set.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" != "--inside" ]; then
  . scripts/prepare.sh
  harbor_prepare
  . test/lib/cluster.sh
  mkdir -p bench/results
  in_cluster -o max_connections=50 -- bash "$0" --inside | tee bench/results/python.txt
  exit "${PIPESTATUS[0]}"
fi

SQLALCHEMY_SILENCE_UBER_WARNING=1 PYTHONDONTWRITEBYTECODE=1 \
  exec /usr/bin/python3 python/bench/bench.py
