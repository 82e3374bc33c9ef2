# shellcheck shell=bash
# Installs the Debian packages buildd needs, and only those that are missing.

BUILDD_PACKAGES=(
  build-essential cmake ccache git pkg-config curl
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto
  libsoci-dev libboost-dev libsodium-dev libspdlog-dev libabsl-dev libpq-dev libssl-dev
  libgtest-dev libgmock-dev bubblewrap openssl
)

# What `./buildd image` needs: buildah builds the images, mmdebstrap makes
# their base, podman with runc runs them (uidmap: rootless, as a user).
BUILDD_IMAGE_PACKAGES=(buildah mmdebstrap podman runc uidmap)

# What only `./buildd test` needs: the libFuzzer targets build with clang
# (tests/fuzz/); the chart test's helm comes zipped (unzip); the image tests
# build and run the images; the browser tests (tests/browser) drive chromium.
BUILDD_TEST_PACKAGES=(postgresql-15 clang-15 libfuzzer-15-dev unzip jq chromium "${BUILDD_IMAGE_PACKAGES[@]}")

# What `./buildd bench` needs (bench/run.sh), and with --profile.
BUILDD_BENCH_PACKAGES=(postgresql-15)
BUILDD_PROFILE_PACKAGES=(linux-perf)

package_installed() {
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

# ensure_packages [extra package...]
ensure_packages() {
  local pkg missing=()
  command -v dpkg-query >/dev/null || die "dpkg-query not found: buildd expects Debian bookworm"
  for pkg in "${BUILDD_PACKAGES[@]}" "$@"; do
    package_installed "$pkg" || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0

  local -a as_root=()
  if ! is_root; then
    if command -v sudo >/dev/null; then
      as_root=(sudo)
    else
      log "missing packages: ${missing[*]}"
      log "install them as root with:"
      printf '  apt-get update && apt-get install -y %s\n' "${missing[*]}" >&2
      exit 1
    fi
  fi
  log "installing missing packages: ${missing[*]}"
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q update >&2 ||
    die "apt-get update failed"
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q install "${missing[@]}" >&2 ||
    die "apt-get install failed for: ${missing[*]}"
  for pkg in "${missing[@]}"; do
    package_installed "$pkg" || die "package $pkg is still not installed"
  done
}

# Node.js and npm, for tools the tests install from the npm registry. A node
# installed otherwise (e.g. NodeSource's, which bundles npm) is used as is.
ensure_npm() {
  command -v node >/dev/null && command -v npm >/dev/null && return 0
  ensure_packages nodejs npm
}
