# Sourced by suites: runs a command in a throwaway cluster with harbor_orm
# preloaded.  Extra -o settings may be passed before the command.
#   in_cluster [-o name=value ...] -- command args...
in_cluster() {
  local opts=(-o shared_preload_libraries=harbor_orm)
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do opts+=("$1"); shift; done
  shift
  # fd 9 is the install lock (scripts/prepare.sh): the server must not
  # inherit it, or a server left behind would hold the lock for ever.
  pg_virtualenv -t -v 15 "${opts[@]}" "$@" 9>&-
}
