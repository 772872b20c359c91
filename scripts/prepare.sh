# Sourced by the test, demo and benchmark commands: installs what is missing,
# takes the machine-wide lock (make install writes one system location, so two
# runs on one machine must not interleave; the lock is held until the caller
# exits) and builds and installs harbor_orm.
harbor_prepare() {
  scripts/install_deps.sh || return 1
  exec 9>/tmp/harbor_orm-tests.lock
  flock 9
  scripts/build_install.sh
}
