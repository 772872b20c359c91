#!/usr/bin/env bash
# Release metadata and the PGXN distribution:
#  - test/lib/pgxn_meta.py refuses a list of broken METAs (so the validator
#    is not a rubber stamp), then validates META.json against the PGXN Meta
#    Spec 1.0 (name, version, abstract, maintainer, license, provides with
#    file and version, prereqs, resources, release_status, meta-spec, tags);
#  - META's version, every provided extension's version, default_version,
#    debian/changelog's version and a CHANGELOG.md section agree;
#  - `make dist` (into a temporary directory, not the repository) gives
#    harbor_orm-<version>.zip with every file under harbor_orm-<version>/,
#    META.json at its top, valid, naming files that are in the zip, the
#    files PGXN's client builds from (Makefile, control file, every install
#    and upgrade script of the tree, sources, README), no build output;
#  - the unpacked zip builds with PGXS (`make`, no install);
#  - src/compat.h stops a build for a major below or above the supported
#    ones (checked with the preprocessor), and META's PostgreSQL prereq
#    and debian/pgversions name the same lowest major.
# Installs nothing; needs no cluster.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/tap.sh
# expect NAME EXPECTED ACTUAL: check with the expected value first.
expect() { check "$1" "$3" "$2"; }

py=/usr/bin/python3
pg_config=/usr/lib/postgresql/15/bin/pg_config
work=$(mktemp -d /tmp/harbor_release.XXXXXX)
trap 'rm -rf "$work"' EXIT

# --- META.json ----------------------------------------------------------------
out=$("$py" test/lib/pgxn_meta.py --selftest META.json 2>&1)
expect "the validator refuses broken METAs and accepts this one" "" "$(grep -v '^selftest:' <<<"$out")"
echo "# $(grep '^selftest:' <<<"$out")"
expect "META.json is valid PGXN metadata, its files exist, versions = default_version" "" \
  "$("$py" test/lib/pgxn_meta.py META.json --root . --control harbor_orm.control 2>&1)"

version=$(sed -n "s/^default_version = '\(.*\)'/\1/p" harbor_orm.control)
expect "debian/changelog's version is default_version" "$version" "$(dpkg-parsechangelog -S Version 2>&1)"
expect "CHANGELOG.md has a section for $version" "1" "$(grep -c "^## $version\b" CHANGELOG.md)"

# --- supported majors ----------------------------------------------------------
# src/compat.h stops the build outside the majors it was checked against;
# META's PostgreSQL prereq and debian/pgversions start at the same major.
range=$(sed -n 's/^#if PG_VERSION_NUM < \([0-9]*\)0000 || PG_VERSION_NUM >= \([0-9]*\)0000$/\1 \2/p' src/compat.h)
min=${range% *}
end=${range#* }
if [ -n "$range" ]; then ok "src/compat.h names the supported majors: $min to $((end - 1))"
else not_ok "src/compat.h names the supported majors"; fi
cc_compat() {  # cc_compat PG_VERSION_NUM: does a file including compat.h compile?
  printf '#include "postgres.h"\n#undef PG_VERSION_NUM\n#define PG_VERSION_NUM %s\n#include "compat.h"\n' "$1" \
    | gcc -fsyntax-only -I src -I "$("$pg_config" --includedir-server)" -x c - 2>&1
}
for v in $((min - 1)) $end; do
  out=$(cc_compat "${v}0000")
  expect "compat.h stops a build for PostgreSQL $v" "yes" \
    "$(grep -q '#error "harbor_orm supports PostgreSQL' <<<"$out" && echo yes || echo "no: $out")"
done
expect "compat.h lets PostgreSQL 15 build" "" "$(cc_compat 150000)"
expect "META's PostgreSQL prereq is the lowest supported major" "$min.0.0" \
  "$("$py" -c 'import json; print(json.load(open("META.json"))["prereqs"]["runtime"]["requires"]["PostgreSQL"])')"
expect "debian/pgversions starts at the lowest supported major" "$min+" "$(grep -v '^#' debian/pgversions)"

# --- make dist ----------------------------------------------------------------
if ! git rev-parse --verify -q HEAD >/dev/null 2>&1; then
  echo "not a git checkout: make dist (git archive) cannot run here"
  not_ok "make dist"
else
  zip="$work/harbor_orm-$version.zip"
  if make -s dist PG_CONFIG="$pg_config" DISTDIR="$work" >"$work/dist.log" 2>&1 && [ -f "$zip" ]; then
    ok "make dist DISTDIR=... writes harbor_orm-$version.zip"
  else
    not_ok "make dist"; sed 's/^/#   /' "$work/dist.log"
  fi
  expect "make dist wrote nothing into the repository" "" \
    "$(git status --porcelain --ignored -- 'harbor_orm-*.zip' 2>/dev/null)"
  names=$("$py" -c 'import sys, zipfile; print("\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))' "$zip" 2>&1)
  expect "every entry is under harbor_orm-$version/" "" "$(grep -v "^harbor_orm-$version/" <<<"$names")"
  want=(META.json Makefile harbor_orm.control README.md CHANGELOG.md)
  for f in $(git ls-tree -r --name-only HEAD -- sql/ src/); do
    case "$f" in sql/harbor_orm--*.sql|src/*.c|src/*.h) want+=("$f") ;; esac
  done
  missing=()
  for f in "${want[@]}"; do grep -qxF "harbor_orm-$version/$f" <<<"$names" || missing+=("$f"); done
  expect "the zip has META.json at its top and the files PGXN builds from (${#want[@]})" "" "${missing[*]}"
  expect "no build output in the zip" "" \
    "$(grep -E '\.(o|so|bc|a|zip|deb)$|^[^/]*/(results|tmp_check|output_iso)/' <<<"$names" || true)"
  "$py" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$zip" "$work/unpacked"
  top="$work/unpacked/harbor_orm-$version"
  expect "the zip's META.json is valid, names files in the zip, matches its control file" "" \
    "$("$py" test/lib/pgxn_meta.py "$top/META.json" --zip "$zip" --control "$top/harbor_orm.control" 2>&1)"
  start=$(date +%s)
  if make -s -C "$top" -j"$(nproc)" PG_CONFIG="$pg_config" >"$work/build.log" 2>&1 && [ -f "$top/harbor_orm.so" ]; then
    ok "the unpacked zip builds with PGXS ($(( $(date +%s) - start ))s)"
  else
    not_ok "the unpacked zip builds with PGXS"; tail -20 "$work/build.log" | sed 's/^/#   /'
  fi
fi

finish
