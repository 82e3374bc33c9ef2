# shellcheck shell=bash
# Shared helpers for ./buildd: messages, users, processes and ports.
# Sourced by ./buildd, which sets ROOT (the repository root) and cd's there.

# Messages go to stderr; stdout is kept for what the user asked for.
log() { printf 'buildd: %s\n' "$*" >&2; }
warn() { printf 'buildd: warning: %s\n' "$*" >&2; }
die() {
  printf 'buildd: error: %s\n' "$*" >&2
  exit 1
}

is_root() { [[ $(id -u) -eq 0 ]]; }

# Prints the last lines of a log file, indented, to stderr.
show_log_tail() {
  local file=$1 lines=${2:-40}
  [[ -f $file ]] || return 0
  printf 'buildd: ---- last %s lines of %s ----\n' "$lines" "$file" >&2
  tail -n "$lines" "$file" | sed 's/^/  | /' >&2
  printf 'buildd: ----\n' >&2
}

# A pid is alive when it exists and is not a zombie (an exited child that the
# shell has not reaped still answers kill -0).
pid_alive() {
  local pid=$1 stat
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

# True when /proc/<pid>/cmdline has an argument whose basename is $2, so that a
# pid file left by a crash never makes us signal an unrelated process that
# happens to reuse the pid.
pid_runs() {
  local pid=$1 name=$2 arg
  pid_alive "$pid" || return 1
  while IFS= read -r -d '' arg; do
    [[ ${arg##*/} == "$name" ]] && return 0
  done 2>/dev/null <"/proc/$pid/cmdline"
  return 1
}

# Reads a pid file; prints the pid when the process named $2 still runs it.
live_pid_from_file() {
  local file=$1 name=$2 pid
  [[ -f $file ]] || return 1
  pid=$(head -n1 "$file" 2>/dev/null | tr -dc '0-9')
  [[ -n $pid ]] && pid_runs "$pid" "$name" || return 1
  printf '%s\n' "$pid"
}

# Polls until $pid has exited, for at most $2 seconds. Returns 1 on timeout.
wait_pid_exit() {
  local pid=$1 seconds=$2 i
  for ((i = 0; i < seconds * 10; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  ! pid_alive "$pid"
}

# Splits a listen address ("host:port", ":port", "port", "[v6]:port") into
# the host and port a local client should dial: wildcard hosts become
# 127.0.0.1. Prints "host port".
dial_parts() {
  local value=$1 host port
  if [[ $value == *:* ]]; then
    host=${value%:*}
    port=${value##*:}
  else
    host=""
    port=$value
  fi
  host=${host#[}
  host=${host%]}
  case $host in
    "" | 0.0.0.0 | "::" | "*" | localhost) host=127.0.0.1 ;;
  esac
  [[ $port =~ ^[0-9]+$ ]] || die "cannot find a port in listen address '$value'"
  printf '%s %s\n' "$host" "$port"
}

# "host:port" to dial for a listen address.
dial_addr() {
  local host port
  read -r host port < <(dial_parts "$1")
  if [[ $host == *:* ]]; then
    printf '[%s]:%s\n' "$host" "$port"
  else
    printf '%s:%s\n' "$host" "$port"
  fi
}

# True when something accepts TCP connections on host:port.
port_open() {
  local host=$1 port=$2
  (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

# Makes every directory from $1 up to / traversable (x) for user $2, which
# must be able to reach its data directory below $1. Only adds o+x, and only
# where that user cannot already pass.
random_hex32() { head -c32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# ensure_task_user NAME: the unprivileged user a root runner runs tasks as.
ensure_task_user() {
  id "$1" >/dev/null 2>&1 && return 0
  log "creating the user $1, which tasks run as"
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$1" ||
    die "useradd $1 failed"
}

ensure_traversable() {
  local dir user=$2
  local -a chain=()
  dir=$(cd "$1" && pwd -P)
  while [[ $dir != / ]]; do
    chain=("$dir" "${chain[@]}")
    dir=$(dirname "$dir")
  done
  # From / downwards: a directory can only be tested once its parent passes.
  for dir in "${chain[@]}"; do
    if ! runuser -u "$user" -- test -x "$dir" 2>/dev/null; then
      log "allowing user $user to traverse $dir (chmod o+x)"
      chmod o+x "$dir"
      runuser -u "$user" -- test -x "$dir" ||
        die "user $user still cannot traverse $dir; move the checkout or set BUILDD_DATABASE_URL"
    fi
  done
}

# Prints NAME=VALUE as a line that both a shell and a dotenv reader accept:
# plain when the value has no special characters, else in single quotes.
env_line() {
  local name=$1 value=$2 q="'\\''"
  if [[ $value =~ ^[A-Za-z0-9_./:@%+=,-]*$ ]]; then
    printf '%s=%s\n' "$name" "$value"
  else
    printf "%s='%s'\n" "$name" "${value//\'/$q}"
  fi
}

# Takes an exclusive lock on $2 through file descriptor $1 or dies with $3.
# Children that outlive us (services, the PostgreSQL server) must be started
# with that descriptor closed, or they would hold the lock after we exit.
lock_or_die() {
  local fd=$1 file=$2 message=$3
  eval "exec $fd>\"\$file\""
  flock -n "$fd" || die "$message"
}
