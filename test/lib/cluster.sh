# Sourced by suites: runs a command in a throwaway cluster with harbor_orm
# preloaded.  Extra -o settings may be passed before the command.
#   in_cluster [-o name=value ...] -- command args...
in_cluster() {
  local opts=(-o shared_preload_libraries=harbor_orm)
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do opts+=("$1"); shift; done
  shift
  pg_virtualenv -t -v 15 "${opts[@]}" "$@"
}
