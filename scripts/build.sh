# shellcheck shell=bash
# Configures (once) and builds into build/: every target, or the given ones.

build_all() {
  # Paths under the checkout are hashed relative to it, and the compile
  # directory is left out of the hash, so separate clones share cache hits.
  # (Debug info then names the directory of whichever clone compiled first.)
  export CCACHE_BASEDIR=$ROOT
  export CCACHE_NOHASHDIR=true
  export CCACHE_DIR=${CCACHE_DIR:-${HOME:-/root}/.cache/ccache}
  mkdir -p "$CCACHE_DIR"

  # `up` and `test` may run at the same time, also from other state
  # directories (BUILDD_STATE_DIR); only one may drive the build.
  mkdir -p build
  exec 8>build/.lock
  if ! flock -n 8; then
    log "waiting for another build in this checkout to finish"
    flock 8
  fi

  if [[ ! -f build/CMakeCache.txt ]]; then
    log "configuring build/"
    cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2 || die "cmake configure failed"
  fi
  local -a targets=()
  (($#)) && targets=(--target "$@")
  log "building${targets[*]:+ ${*}} (-j${BUILDD_JOBS:-2})"
  cmake --build build -j"${BUILDD_JOBS:-2}" "${targets[@]}" >&2 || die "build failed"
  exec 8>&-
}
