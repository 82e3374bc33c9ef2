#!/usr/bin/env bash
# ./buildd bench [dispatch_bench flags…] — builds, starts a private
# PostgreSQL 15 with default (durable) settings in .buildd/bench-pg, and runs
# the broker benchmark (bench/dispatch_bench.cc) against a fresh database in
# it, then the runner's sandbox benchmark.
#   --only=dispatch,lifecycle,events,fanout,idle,peer,sandbox   parts to run
#   --peer      also graphile-worker 0.18.0 (installed once with npm into
#               .buildd/bench-tools) on its own database of the same server
#   --profile   perf record -g the broker during the dispatch runs
# See `build/bench/dispatch_bench --help` for the sizes of each part.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$ROOT"
STATE_DIR=$ROOT/.buildd
# shellcheck source=../scripts/common.sh
. "$ROOT/scripts/common.sh"
# shellcheck source=../scripts/deps.sh
. "$ROOT/scripts/deps.sh"
# shellcheck source=../scripts/build.sh
. "$ROOT/scripts/build.sh"
# shellcheck source=../scripts/pg.sh
. "$ROOT/scripts/pg.sh"

PEER_PACKAGE=graphile-worker
PEER_VERSION=0.18.0

# Which parts the flags ask for: sets ONLY (empty: the default parts),
# WANT_PEER and WANT_PROFILE.
ONLY="" WANT_PEER=false WANT_PROFILE=false
scan_flags() {
  while (($#)); do
    case $1 in
      --only=*) ONLY=${1#--only=} ;;
      --only) ONLY=${2:-} && shift ;;
      --peer | --peer=true | --peer=1) WANT_PEER=true ;;
      --profile | --profile=true | --profile=1) WANT_PROFILE=true ;;
    esac
    shift
  done
  [[ ,$ONLY, == *,peer,* ]] && WANT_PEER=true
  return 0
}

runs_part() { [[ -z $ONLY || ,$ONLY, == *,$1,* ]]; }
# Whether a part of dispatch_bench runs (sandbox is this script's).
runs_broker_bench() {
  local rest=,$ONLY,
  rest=${rest//,sandbox,/,}
  [[ -z $ONLY || -n ${rest//,/} ]] || $WANT_PEER
}

# Installs the peer into $1 unless that exact version is there already.
ensure_peer() {
  local dir=$1 installed=""
  local pkg=$dir/node_modules/$PEER_PACKAGE/package.json
  [[ -f $pkg ]] && installed=$(node -p "require('$pkg').version" 2>/dev/null || true)
  [[ $installed == "$PEER_VERSION" ]] && return 0
  ensure_npm
  log "installing $PEER_PACKAGE@$PEER_VERSION into $dir"
  mkdir -p "$dir"
  [[ -f $dir/package.json ]] || echo '{"private": true}' >"$dir/package.json"
  npm install --prefix "$dir" --no-audit --no-fund --save-exact \
    "$PEER_PACKAGE@$PEER_VERSION" >&2 || die "npm install $PEER_PACKAGE@$PEER_VERSION failed"
}

scan_flags "$@"
mkdir -p "$STATE_DIR"
ensure_packages "${BUILDD_BENCH_PACKAGES[@]}"
if $WANT_PROFILE; then ensure_packages "${BUILDD_PROFILE_PACKAGES[@]}"; fi
build_all
if $WANT_PEER; then ensure_peer "$STATE_DIR/bench-tools"; fi

if runs_broker_bench; then
  port=${BUILDD_BENCH_PG_PORT:-54340}
  password=$(pg_password "$STATE_DIR/bench-pg.password")
  pg_start "$STATE_DIR/bench-pg" "$port" up "$password"
  trap 'pg_stop "$STATE_DIR/bench-pg"' EXIT
  if is_root; then ensure_task_user buildd-task; fi
  db=bench_$(date +%s)
  peer_db=${db}_peer
  pg_ensure_database "$port" "$db"
  if $WANT_PEER; then pg_ensure_database "$port" "$peer_db"; fi
  url_of() { echo "postgresql://buildd:$password@127.0.0.1:$port/$1"; }
  # The URLs (with the password) reach the benchmark through its environment.
  status=0
  BUILDD_DATABASE_URL=$(url_of "$db") BUILDD_PEER_DATABASE_URL=$(url_of "$peer_db") \
    "$ROOT/build/bench/dispatch_bench" --work_dir="$STATE_DIR/bench-run" \
    --peer_tools_dir="$STATE_DIR/bench-tools" "$@" || status=$?
  pg_client "$PG_BIN/dropdb" -h 127.0.0.1 -p "$port" -U buildd "$db" || true
  if $WANT_PEER; then pg_client "$PG_BIN/dropdb" -h 127.0.0.1 -p "$port" -U buildd "$peer_db" || true; fi
  ((status == 0)) || exit "$status"
fi
# The runner's cost of a sandbox per task, without the broker.
if runs_part sandbox; then
  "$ROOT/build/bench/sandbox_bench" --work_dir="$STATE_DIR/bench-sandbox"
fi
