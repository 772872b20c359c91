# Sourced by shell suites: TAP output and the checks they share.
#   ok DESCRIPTION / not_ok DESCRIPTION [DETAIL]
#   check DESCRIPTION GOT EXPECTED
#   psql_in DB SQL...              rows |-separated, errors to stdout; each SQL
#                                  argument is its own transaction
#   wait_until DESCRIPTION SECONDS EXPECTED COMMAND...
#                                  polls COMMAND until it prints EXPECTED
#   wait_log DESCRIPTION SECONDS PATTERN [COUNT]
#                                  polls the cluster's log until COUNT lines (or,
#                                  without COUNT, at least one) match PATTERN
#   finish / bail DESCRIPTION [DETAIL]
# Every wait polls with a deadline; nothing sleeps for a fixed time to let
# something happen.

tests=0
failures=0

ok() {
  tests=$((tests + 1))
  echo "ok $tests - $1"
}

not_ok() {
  tests=$((tests + 1))
  failures=$((failures + 1))
  echo "not ok $tests - $1"
  if [ $# -gt 1 ]; then printf '#   %s\n' "$2"; fi
}

check() {
  if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "got '$2', expected '$3'"; fi
}

psql_in() {
  local db=$1 args=()
  shift
  for c in "$@"; do args+=(-c "$c"); done
  psql -X -A -t -q -v ON_ERROR_STOP=1 -d "$db" "${args[@]}" 2>&1
}

wait_until() {
  local desc=$1 secs=$2 want=$3 got=""
  shift 3
  local deadline=$(( $(date +%s) + secs ))
  while :; do
    got=$("$@")
    if [ "$got" = "$want" ]; then ok "$desc"; return 0; fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      not_ok "$desc" "after ${secs}s: got '$got', expected '$want'"
      return 1
    fi
    sleep 0.2
  done
}

# The log of the pg_virtualenv cluster the suite runs in.
server_log() {
  cat "$(dirname "$PG_CLUSTER_CONF_ROOT")"/log/*.log
}

log_count() {
  server_log | grep -c -- "$1"
}

wait_log() {
  local desc=$1 secs=$2 pattern=$3 want=${4:-} got
  local deadline=$(( $(date +%s) + secs ))
  while :; do
    got=$(log_count "$pattern")
    if { [ -n "$want" ] && [ "$got" = "$want" ]; } || { [ -z "$want" ] && [ "$got" -ge 1 ]; }; then
      ok "$desc"
      return 0
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      not_ok "$desc" "after ${secs}s: $got log lines match '$pattern', expected ${want:-at least 1}"
      return 1
    fi
    sleep 0.2
  done
}

# The plan line, and on failure the end of the server log; exits.
finish() {
  echo "1..$tests"
  if [ "$failures" -gt 0 ]; then
    echo "# $failures of $tests failed; server log:"
    server_log 2>/dev/null | grep -v '^\s*$' | tail -60 | sed 's/^/#   /'
    exit 1
  fi
  exit 0
}

# A set-up step failed: later checks would only time out.
bail() {
  not_ok "$1" "${2:-}"
  echo "Bail out! $1"
  finish
}
