# shellcheck shell=bash
# `./buildd image`: the container images, built here with buildah from the
# binaries of the CMake build (images/*/Containerfile).
#
# No registry is reached: the base, debian:bookworm-slim, is made locally with
# mmdebstrap from the Debian mirror apt uses, and kept (rebuilt after
# BUILDD_IMAGE_BASE_MAX_DAYS days, or with --refresh-base). The context given
# to buildah holds the stripped binaries and the Debian packages that hold
# the shared libraries they load (ldd, then dpkg -S).
#
# Layout under the build directory:
#   image/context/   the build context
#   image/NAME.iid   the id of the image last built from this build directory
#                    (what the image tests run)
#   image/NAME.log   buildah's output

IMAGE_BASE=docker.io/library/debian:bookworm-slim
IMAGE_BASE_MAX_DAYS=${BUILDD_IMAGE_BASE_MAX_DAYS:-7}
IMAGE_NAMES=(services runner)

# Binaries of the build directory, by image.
image_binaries() {
  case $1 in
    services) printf '%s\n' services/accounts/buildd-accounts services/broker/buildd-broker \
      gateway/buildd-gateway ;;
    runner) printf '%s\n' services/runner/buildd-runner ;;
  esac
}

# The project version, as the binaries report it.
image_version() {
  sed -n 's/^project(buildd .*VERSION \([0-9][0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt" | head -n1
}

# image_runtime_packages BINARY...: prints, one a line, the Debian packages
# that hold the shared libraries the binaries load. Dies when a library is
# not found or belongs to no package (one built by hand would not be in the
# image either).
image_runtime_packages() {
  local out lib real candidate
  out=$(ldd "$@") || die "ldd failed on $*"
  if grep -q 'not found' <<<"$out"; then
    die "libraries not found: $(grep 'not found' <<<"$out" | sort -u | tr -s ' \t\n' ' ')"
  fi
  local -a libs candidates=()
  mapfile -t libs < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 }
                           $1 ~ /^\// && $2 ~ /^\(/ { print $1 }' <<<"$out" | sort -u)
  # dpkg knows each file under one name: merged /usr makes /lib/x and
  # /usr/lib/x the same file, and ldd may name it through a symlink.
  for lib in "${libs[@]}"; do
    real=$(realpath -e "$lib") || die "cannot resolve $lib"
    for candidate in "$lib" "$real"; do
      candidates+=("$candidate")
      case $candidate in
        /usr/*) candidates+=("${candidate#/usr}") ;;
        *) candidates+=("/usr$candidate") ;;
      esac
    done
  done
  local -A package_of=()
  local line packages path
  while IFS= read -r line; do
    # "libfoo1:amd64: /usr/lib/x86_64-linux-gnu/libfoo.so.1" (or "a, b: path")
    path=${line##*: }
    packages=${line%: *}
    package_of[$path]=$packages
  done < <(dpkg-query -S "${candidates[@]}" 2>/dev/null | grep -v '^diversion ')
  local -a found=()
  for lib in "${libs[@]}"; do
    real=$(realpath -e "$lib")
    packages=""
    for candidate in "$lib" "$real" "/usr$lib" "${lib#/usr}" "/usr$real" "${real#/usr}"; do
      if [[ -n ${package_of[$candidate]:-} ]]; then
        packages=${package_of[$candidate]}
        break
      fi
    done
    [[ -n $packages ]] || die "no Debian package holds $lib (needed by $*)"
    local package
    for package in ${packages//,/ }; do found+=("${package%%:*}"); done
  done
  printf '%s\n' "${found[@]}" | sort -u
}

# The Debian sources apt uses here, as mmdebstrap's mirror arguments (none:
# its default, deb.debian.org with updates and security).
image_mirrors() {
  if [[ -n ${BUILDD_IMAGE_MIRROR:-} ]]; then
    printf '%s\n' "$BUILDD_IMAGE_MIRROR"
  elif [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    printf '%s\n' /etc/apt/sources.list.d/debian.sources
  elif [[ -f /etc/apt/sources.list ]]; then
    # Only Debian's own suites of bookworm, not third-party repositories.
    grep -E '^deb[[:space:]]' /etc/apt/sources.list |
      grep -E '[[:space:]]bookworm(-updates|-security|/updates)?[[:space:]]' || true
  fi
}

# Seconds since the base image was made here; empty when it was not made by
# image_ensure_base (e.g. pulled from a registry), which is then kept as is.
image_base_age() {
  local made
  made=$(buildah inspect --type image \
    --format '{{index .OCIv1.Config.Labels "org.buildd.base.made"}}' "$IMAGE_BASE" 2>/dev/null) ||
    made=""
  if [[ $made =~ ^[0-9]+$ ]]; then echo $(($(date +%s) - made)); fi
}

# Makes debian:bookworm-slim from mmdebstrap's minbase, unless it exists and
# is fresh enough. Several checkouts may get here at once: one makes it.
image_ensure_base() {
  local refresh=$1 work=$2 age
  exec 7>"${TMPDIR:-/tmp}/buildd-image-base.lock"
  flock 7
  if ((!refresh)) && buildah inspect --type image "$IMAGE_BASE" >/dev/null 2>&1; then
    age=$(image_base_age)
    if [[ -z $age ]] || ((age < IMAGE_BASE_MAX_DAYS * 86400)); then
      log "base image $IMAGE_BASE is there${age:+ (made $((age / 3600)) h ago)}"
      exec 7>&-
      return 0
    fi
    log "base image $IMAGE_BASE is older than $IMAGE_BASE_MAX_DAYS days; making it anew"
  fi
  IMAGE_OLD_BASE_MADE=$(buildah inspect --type image \
    --format '{{index .OCIv1.Config.Labels "org.buildd.base.made"}}' "$IMAGE_BASE" 2>/dev/null) ||
    IMAGE_OLD_BASE_MADE=""
  local started=$SECONDS tar=$work/base.tar ctr
  local -a mirrors
  mapfile -t mirrors < <(image_mirrors)
  log "making $IMAGE_BASE with mmdebstrap (minbase, from ${mirrors[*]:-deb.debian.org})"
  rm -f "$tar"
  # Like Debian's official slim image: merged /usr without the usrmerge
  # package (and so without perl), no manuals, docs or translations.
  if ! mmdebstrap --variant=minbase --mode=auto \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    bookworm "$tar" "${mirrors[@]}" >"$work/mmdebstrap.log" 2>&1; then
    show_log_tail "$work/mmdebstrap.log"
    die "mmdebstrap failed (log: $work/mmdebstrap.log)"
  fi
  ctr=$(buildah from scratch) || die "buildah from scratch failed"
  if ! {
    buildah add --quiet "$ctr" "$tar" / >/dev/null &&
      buildah config --cmd '["bash"]' --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --label org.buildd.base.made="$(date +%s)" "$ctr" &&
      buildah commit --quiet --rm "$ctr" "$IMAGE_BASE" >/dev/null
  }; then
    buildah rm "$ctr" >/dev/null 2>&1 || true
    die "cannot commit $IMAGE_BASE"
  fi
  rm -f "$tar"
  log "made $IMAGE_BASE in $((SECONDS - started)) s"
  exec 7>&-
}

# Removes the image that `image/NAME.iid` named before this build, and its
# layer cache above what the new image shares, so rebuilding for every test
# run does not fill the disk. Images other builds use are left (buildah
# refuses to remove an image a container or a child image uses).
image_remove_previous() {
  local old=$1 new=$2 id
  [[ -n $old && $old != "$new" ]] || return 0
  local -A keep=()
  id=$new
  while [[ -n $id ]]; do
    keep[$id]=1
    id=$(podman image inspect --format '{{.Parent}}' "$id" 2>/dev/null) || id=""
  done
  id=$old
  while [[ -n $id && -z ${keep[$id]:-} ]]; do
    local parent
    parent=$(podman image inspect --format '{{.Parent}}' "$id" 2>/dev/null) || parent=""
    # A tagged image stays: someone named it.
    [[ -z $(podman image inspect --format '{{join .RepoTags ""}}' "$id" 2>/dev/null) ]] || break
    buildah rmi "$id" >/dev/null 2>&1 || break
    id=$parent
  done
}

# After the base was made anew: removes the images built on the old one
# (they carry its label) that have no name, children or containers left.
image_remove_old_base() {
  local made=$1 id removed=1
  [[ $made =~ ^[0-9]+$ ]] || return 0
  while ((removed)); do
    removed=0
    while IFS= read -r id; do
      [[ -z $(podman image inspect --format '{{join .RepoTags ""}}' "$id" 2>/dev/null) ]] || continue
      if buildah rmi "$id" >/dev/null 2>&1; then removed=1; fi
    done < <(buildah images --all --quiet --no-trunc --filter "label=org.buildd.base.made=$made")
  done
}

# image_build_one NAME CONTEXT VERSION [buildah bud option...]
image_build_one() {
  local name=$1 context=$2 version=$3 started=$SECONDS
  shift 3
  local iid_file=$context/../$name.iid old="" new build_id
  [[ -f $iid_file ]] && old=$(<"$iid_file")
  # Images of different build directories differ in this label, even with
  # the same binaries, so removing one's previous image never takes away
  # the image another one is testing.
  build_id=$(realpath -m "$context/../.." | sha256sum | head -c 16)
  log "building localhost/buildd/$name:$version"
  if ! buildah bud --pull=never --isolation chroot --layers --force-rm --quiet \
    --iidfile "$iid_file.new" --build-arg VERSION="$version" --label org.buildd.build="$build_id" "$@" \
    -f "$ROOT/images/$name/Containerfile" \
    -t "localhost/buildd/$name:$version" -t "localhost/buildd/$name:latest" \
    "$context" >"$context/../$name.log" 2>&1; then
    show_log_tail "$context/../$name.log" 60
    die "buildah bud failed for images/$name/Containerfile (log: $context/../$name.log)"
  fi
  new=$(<"$iid_file.new")
  mv -f "$iid_file.new" "$iid_file"
  image_remove_previous "$old" "$new"
  log "built localhost/buildd/$name:$version in $((SECONDS - started)) s"
}

image_size() {
  local bytes
  bytes=$(podman image inspect --format '{{.Size}}' "$1") || return 1
  awk -v b="$bytes" 'BEGIN { printf "%.0f MB", b / 1e6 }'
}

image_usage() {
  cat <<'EOF'
usage: ./buildd image [--agents] [--refresh-base] [--no-build] [--build-dir DIR]

Builds localhost/buildd/services and localhost/buildd/runner (tagged with the
project version and latest) with buildah from the binaries of the CMake build.
  --agents        put the Claude Code and Codex CLIs (and Node.js) in the
                  runner image
  --refresh-base  make the base image (debian:bookworm-slim, with mmdebstrap)
                  anew even when a fresh one is there
  --no-build      use the binaries as they are (default: build them first)
  --build-dir DIR the CMake build directory (default: build/)
EOF
}

cmd_image() {
  local agents=0 refresh=0 build=1 build_dir=$ROOT/build
  while (($#)); do
    case $1 in
      --agents) agents=1 ;;
      --refresh-base) refresh=1 ;;
      --no-build) build=0 ;;
      --build-dir)
        (($# >= 2)) || die "--build-dir needs a directory"
        build_dir=$(realpath -m "$2")
        shift
        ;;
      --build-dir=*) build_dir=$(realpath -m "${1#*=}") ;;
      -h | --help)
        image_usage
        return 0
        ;;
      *) die "image: unknown option '$1' (see ./buildd image --help)" ;;
    esac
    shift
  done
  ensure_packages "${BUILDD_IMAGE_PACKAGES[@]}"
  local started=$SECONDS name binary version
  version=$(image_version)
  [[ -n $version ]] || die "cannot read the project version from CMakeLists.txt"
  if ((build)); then
    [[ $build_dir == "$ROOT/build" ]] || die "--build-dir needs --no-build (./buildd builds into build/)"
    build_all buildd-accounts buildd-broker buildd-gateway buildd-runner
  fi

  local image_dir=$build_dir/image context
  context=$image_dir/context
  rm -rf "$context"
  mkdir -p "$context/bin" "$context/ca"
  if ((agents)); then
    # npm in the build stage must trust what this machine trusts (a proxy's
    # authority, say); the runner image itself gets only Debian's.
    find /usr/local/share/ca-certificates -name '*.crt' -exec cp -t "$context/ca" {} + 2>/dev/null || true
  fi
  for name in "${IMAGE_NAMES[@]}"; do
    local -a binaries=()
    while IFS= read -r binary; do
      [[ -x $build_dir/$binary ]] || die "$build_dir/$binary is not built (run ./buildd image without --no-build)"
      binaries+=("$build_dir/$binary")
      # Symbols stay, for stack traces; debug info is most of the size.
      objcopy --strip-debug "$build_dir/$binary" "$context/bin/${binary##*/}" ||
        die "objcopy failed on $binary"
    done < <(image_binaries "$name")
    image_runtime_packages "${binaries[@]}" >"$context/$name.packages"
    log "$name: runtime packages $(tr '\n' ' ' <"$context/$name.packages")"
  done

  IMAGE_OLD_BASE_MADE=""
  image_ensure_base "$refresh" "$image_dir"
  image_build_one services "$context" "$version"
  local -a runner_args=()
  ((agents)) && runner_args=(--build-arg AGENTS=1)
  image_build_one runner "$context" "$version" "${runner_args[@]}"
  image_remove_old_base "$IMAGE_OLD_BASE_MADE"

  for name in "${IMAGE_NAMES[@]}"; do
    printf 'localhost/buildd/%s:%s\t%s\n' "$name" "$version" \
      "$(image_size "$(<"$image_dir/$name.iid")")"
  done
  log "images built in $((SECONDS - started)) s; run one with podman run --rm localhost/buildd/runner:$version --help"
}
