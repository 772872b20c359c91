#!/usr/bin/env bash
# Installs the .debs built by dpkg-buildpackage (in DIR, default ..) into the
# system, runs CREATE EXTENSION and the pgTAP suite (test/lib/pgtap.sh)
# against the installed files, checks the harbor tool and pkg-config file,
# removes the packages and reinstalls the working tree's build, all under
# the machine-wide test lock.  Run as root from the source tree:
#
#   bash debian/check-built-debs.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-..}
v=$(dpkg-parsechangelog -S Version)
arch=$(dpkg --print-architecture)
debs=()
for p in $(pg_buildext supported-versions); do debs+=("$dir/postgresql-$p-harbor-orm_${v}_$arch.deb"); done
debs+=("$dir/libharbor_${v}_$arch.deb")
exec 9>/tmp/harbor_orm-tests.lock
flock 9
rc=0
dpkg -i "${debs[@]}" >/dev/null
echo "installed: ${debs[*]}"
harbor --help >/dev/null && echo "ok - harbor --help" || { echo "not ok - harbor --help"; rc=1; }
[ "$(pkg-config --modversion harbor)" != "" ] && echo "ok - pkg-config harbor" || { echo "not ok - pkg-config harbor"; rc=1; }
bash test/lib/pgtap.sh 9>&- || rc=1
dpkg -r $(for d in "${debs[@]}"; do dpkg-deb -f "$d" Package; done) >/dev/null
echo "removed"
scripts/build_install.sh >/dev/null 2>&1 || { echo "reinstalling the working tree's build failed"; rc=1; }
exit $rc
