#!/usr/bin/env bash
# Builds and runs the libFuzzer targets of tests/fuzz; ctest calls it (see
# CMakeLists.txt there).
#
#   fuzz.sh build SOURCE_DIR BUILD_DIR
#       configures BUILD_DIR (once) with clang++-15 and -DBUILDD_FUZZ=ON and
#       builds the targets (-j${BUILDD_JOBS:-2}).
#   fuzz.sh run BUILD_DIR/NAME_fuzzer FUZZ_DIR
#       runs the target for ${BUILDD_FUZZ_SECONDS:-20} s from the seeds in
#       FUZZ_DIR/corpus/NAME (with FUZZ_DIR/NAME.dict when there is one).
#       New inputs go to a temporary directory, never to the tree. On a crash
#       it prints the sanitizer report, keeps the input under
#       BUILD_DIR/crashes/NAME/ and fails.
set -euo pipefail

log() { printf 'fuzz: %s\n' "$*" >&2; }
die() {
  printf 'fuzz: error: %s\n' "$*" >&2
  exit 1
}

cmd_build() {
  local source=$1 dir=$2 compiler
  compiler=$(command -v clang++-15) ||
    die "clang++-15 not found: install clang-15 and libfuzzer-15-dev (./buildd test does)"
  if [[ ! -f $dir/CMakeCache.txt ]]; then
    cmake -S "$source" -B "$dir" -DBUILDD_FUZZ=ON -DCMAKE_CXX_COMPILER="$compiler" \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo || die "cmake configure of $dir failed"
  fi
  cmake --build "$dir" -j"${BUILDD_JOBS:-2}" || die "building the fuzz targets failed"
}

cmd_run() {
  local binary=$1 fuzz_dir=$2 seconds=${BUILDD_FUZZ_SECONDS:-20}
  local name=${binary##*/}
  name=${name%_fuzzer}
  local seeds=$fuzz_dir/corpus/$name crashes=${binary%/*}/crashes/$name
  [[ -x $binary ]] || die "$binary is missing (ctest runs fuzz.build first)"
  [[ -d $seeds ]] || die "no seed corpus at $seeds"

  local work
  work=$(mktemp -d "${TMPDIR:-/tmp}/buildd-fuzz-$name.XXXXXX")
  # shellcheck disable=SC2064 # expand now: $work is local
  trap "rm -rf '$work'" EXIT
  mkdir -p "$work/corpus" "$work/artifacts"

  local -a args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048
    -print_final_stats=1 -artifact_prefix="$work/artifacts/")
  [[ -f $fuzz_dir/$name.dict ]] && args+=(-dict="$fuzz_dir/$name.dict")

  local rc=0
  # The first directory receives what the run finds; the seeds are only read.
  ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
    ASAN_SYMBOLIZER_PATH=${ASAN_SYMBOLIZER_PATH:-$(command -v llvm-symbolizer-15 || true)} \
    "$binary" "${args[@]}" "$work/corpus" "$seeds" >"$work/log" 2>&1 || rc=$?

  local done_line
  done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$work/log" | tail -n1 || true)
  if ((rc == 0)); then
    log "$name: ${done_line:-no summary line}; corpus $(find "$seeds" -type f | wc -l) seeds" \
      "-> $(find "$work/corpus" -type f | wc -l) new inputs"
    return 0
  fi

  # What libFuzzer printed from the first report on: the sanitizer's or the
  # failed check's message and the stack.
  sed -n '/==[0-9]*==\|check failed\|runtime error\|ERROR: libFuzzer/,$p' "$work/log" >&2
  local found=0 input
  mkdir -p "$crashes"
  for input in "$work"/artifacts/*; do
    [[ -f $input ]] || continue
    found=1
    cp "$input" "$crashes/"
    log "$name: input kept as $crashes/${input##*/} (reproduce: $binary $crashes/${input##*/})"
    log "$name: the input, base64: $(base64 -w0 "$input" | head -c 4096)"
  done
  ((found)) || tail -n 40 "$work/log" >&2
  die "$name failed (exit status $rc)${done_line:+; $done_line}"
}

case ${1:-} in
  build)
    (($# == 3)) || die "usage: fuzz.sh build SOURCE_DIR BUILD_DIR"
    cmd_build "$2" "$3"
    ;;
  run)
    (($# == 3)) || die "usage: fuzz.sh run BUILD_DIR/NAME_fuzzer FUZZ_DIR"
    cmd_run "$2" "$3"
    ;;
  *) die "usage: fuzz.sh build|run ..." ;;
esac
