#!/usr/bin/env bash
# Runs every harbor_orm test suite, each in a throwaway PostgreSQL cluster,
# and ends with a pass/fail summary.  Installs what is missing first.
#
#   bash test/run_all.sh            all suites
#   bash test/run_all.sh regress    only the named suites
set -uo pipefail
cd "$(dirname "$0")/.."

. scripts/prepare.sh
if ! harbor_prepare; then
  echo "dependency installation or build failed"
  echo "0 passed, 1 failed"
  exit 1
fi

# Every suite: a name and a command; the command manages its own cluster(s).
suites=(regress pgtap)
for f in test/suites/*.sh; do
  [ -e "$f" ] && suites+=("$(basename "$f" .sh)")
done
if [ $# -gt 0 ]; then suites=("$@"); fi

passed=0
failed=0
failed_names=()
for s in "${suites[@]}"; do
  case "$s" in
    regress|pgtap) cmd=(test/lib/"$s".sh) ;;
    *)             cmd=(test/suites/"$s".sh) ;;
  esac
  echo
  echo "=================== suite: $s"
  start=$(date +%s)
  # 9>&-: the suite's servers must not inherit the install lock's descriptor,
  # or a server left behind by an interrupted run keeps every later run waiting.
  if bash "${cmd[@]}" 9>&-; then
    passed=$((passed + 1))
    echo "------------------- suite $s: PASS ($(( $(date +%s) - start ))s)"
  else
    failed=$((failed + 1))
    failed_names+=("$s")
    echo "------------------- suite $s: FAIL ($(( $(date +%s) - start ))s)"
  fi
done

echo
echo "=================== summary"
for s in "${suites[@]}"; do
  st=PASS
  for f in "${failed_names[@]+"${failed_names[@]}"}"; do [ "$f" = "$s" ] && st=FAIL; done
  printf '  %-24s %s\n' "$s" "$st"
done
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
