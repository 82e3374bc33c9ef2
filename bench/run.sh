#!/usr/bin/env bash
# ./buildd bench [dispatch_bench flags…] — builds, starts a private
# PostgreSQL 15 with default (durable) settings in .buildd/bench-pg, and runs
# the dispatch benchmark against a fresh database in it.
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

mkdir -p "$STATE_DIR"
ensure_packages
build_all
port=${BUILDD_BENCH_PG_PORT:-54340}
password=$(pg_password "$STATE_DIR/bench-pg.password")
pg_start "$STATE_DIR/bench-pg" "$port" up "$password"
trap 'pg_stop "$STATE_DIR/bench-pg"' EXIT
if is_root; then ensure_task_user buildd-task; fi
db=bench_$(date +%s)
pg_ensure_database "$port" "$db"
# The URL (with the password) reaches the benchmark through its environment.
BUILDD_DATABASE_URL="postgresql://buildd:$password@127.0.0.1:$port/$db" \
  "$ROOT/build/bench/dispatch_bench" --work_dir="$STATE_DIR/bench-run" "$@"
pg_client "$PG_BIN/dropdb" -h 127.0.0.1 -p "$port" -U buildd "$db" || true
# The runner's cost of a sandbox per task, without the broker.
"$ROOT/build/bench/sandbox_bench" --work_dir="$STATE_DIR/bench-sandbox"
