#!/usr/bin/env bash
# The Harbor Commerce demo: installs what is missing, builds and installs
# harbor_orm, starts a throwaway PostgreSQL 15 cluster with the extension
# preloaded and runs every step of demo/steps/ in order against it.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/prepare.sh
harbor_prepare

exec pg_virtualenv -t -v 15 \
  -o shared_preload_libraries=harbor_orm \
  -o harbor_orm.sweep_interval=1s \
  -o harbor_orm.sweeper_databases=harbor_demo \
  bash demo/lib/steps.sh
