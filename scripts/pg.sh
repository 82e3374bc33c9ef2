# shellcheck shell=bash
# A private PostgreSQL cluster in a directory of the checkout:
#   <dir>/data  the cluster (initdb -A scram-sha-256 -U buildd, a password)
#   <dir>/run   its unix socket (mode 0700)
#   <dir>/log   the server log
# It listens on 127.0.0.1 only. As root, the server runs as the user postgres.

PG_BIN=${BUILDD_PG_BIN:-/usr/lib/postgresql/15/bin}
PG_START_TIMEOUT=${BUILDD_PG_START_TIMEOUT:-30}

# Runs a command as the user that owns the private clusters.
pg_as_owner() {
  if is_root; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_running() {
  [[ -f $1/data/PG_VERSION ]] || return 1
  pg_as_owner "$PG_BIN/pg_ctl" status -D "$1/data" >/dev/null 2>&1
}

pg_ready() {
  "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$1" -U buildd -d postgres >/dev/null 2>&1
}

# Single-quotes a value for postgresql.conf.
pg_quote() { printf "'%s'" "${1//\'/\'\'}"; }

# pg_password FILE: the password kept in FILE (0600), made on first use;
# for the clusters whose password is not among `up`'s secrets.
pg_password() {
  [[ -s $1 ]] || (umask 077 && random_hex32 >"$1")
  cat "$1"
}

# Runs a client as the cluster's user buildd with its password ($PG_PASSWORD),
# which reaches it only through the environment.
pg_client() { PGPASSWORD=$PG_PASSWORD "$@"; }

# Every login needs the password, over TCP and the socket alike.
_pg_write_hba() {
  local dir=$1
  {
    echo "# Written by ./buildd: every connection authenticates."
    echo "local all all scram-sha-256"
    echo "host all all 127.0.0.1/32 scram-sha-256"
  } >"$dir/data/pg_hba.conf"
  if is_root; then chown postgres: "$dir/data/pg_hba.conf"; fi
  chmod 600 "$dir/data/pg_hba.conf"
}

_pg_prepare_dir() {
  local dir=$1
  mkdir -p "$dir/run"
  chmod 700 "$dir/run"
  if is_root; then
    id postgres >/dev/null 2>&1 || die "user postgres does not exist (is postgresql-15 installed?)"
    chown -R postgres: "$dir"
    ensure_traversable "$dir" postgres
  else
    local owner
    owner=$(stat -c %U "$dir")
    [[ $owner == "$(id -un)" ]] ||
      die "$dir belongs to $owner (made by an earlier run as root): run as root, or delete it"
    if [[ -d $dir/data ]]; then
      owner=$(stat -c %U "$dir/data")
      [[ $owner == "$(id -un)" ]] || die "$dir/data belongs to $owner: run as root, or delete it"
    fi
  fi
}

_pg_write_conf() {
  local dir=$1 port=$2 kind=$3 socket_dir conf
  socket_dir=$(cd "$dir/run" && pwd -P)
  conf=$dir/data/buildd.conf
  {
    echo "# Written by ./buildd before every start."
    echo "listen_addresses = '127.0.0.1'"
    echo "port = $port"
    # A unix socket path must fit in 107 bytes; TCP is what we use anyway.
    if ((${#socket_dir} + 20 < 107)); then
      echo "unix_socket_directories = $(pg_quote "$socket_dir")"
    else
      echo "unix_socket_directories = ''"
    fi
    if [[ $kind == test ]]; then
      # Throwaway test databases: durability only costs time here.
      echo "fsync = off"
      echo "synchronous_commit = off"
      echo "full_page_writes = off"
      echo "max_connections = 200"
    fi
  } >"$conf"
  if is_root; then chown postgres: "$conf"; fi
}

# pg_start DIR PORT KIND PASSWORD — KIND is "up" (durable) or "test" (fast,
# unsafe); PASSWORD is the user buildd's (set on a cluster made before
# passwords, which then stops trusting). Reuses a server still running from
# a crashed run when it answers on PORT.
pg_start() {
  local dir=$1 port=$2 kind=$3 i
  PG_PASSWORD=$4
  [[ -n $PG_PASSWORD ]] || die "pg_start: no password for the cluster in $dir"
  [[ -x $PG_BIN/pg_ctl ]] || die "PostgreSQL 15 not found in $PG_BIN (package postgresql-15)"
  [[ $port =~ ^[0-9]+$ ]] || die "invalid PostgreSQL port '$port'"
  _pg_prepare_dir "$dir"

  if [[ ! -f $dir/data/PG_VERSION ]]; then
    log "creating a PostgreSQL cluster in $dir/data"
    rm -rf "$dir/data"
    local pwfile=$dir/initdb.pw
    (umask 077 && printf '%s\n' "$PG_PASSWORD" >"$pwfile")
    if is_root; then chown postgres: "$pwfile"; fi
    if ! pg_as_owner "$PG_BIN/initdb" -D "$dir/data" -A scram-sha-256 --pwfile="$pwfile" \
      -U buildd --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 9>&- 8>&-; then
      rm -f "$pwfile"
      show_log_tail "$dir/initdb.log"
      die "initdb failed"
    fi
    rm -f "$pwfile"
    echo "include_if_exists = 'buildd.conf'" >>"$dir/data/postgresql.conf"
  fi

  if pg_running "$dir"; then
    if pg_ready "$port"; then
      log "reusing the PostgreSQL server already running in $dir (port $port)"
      _pg_write_conf "$dir" "$port" "$kind"
      _pg_require_password "$dir" "$port"
      return 0
    fi
    log "stopping a PostgreSQL server left running in $dir on another port"
    pg_stop "$dir"
  fi
  _pg_write_conf "$dir" "$port" "$kind"

  if port_open 127.0.0.1 "$port"; then
    die "port $port is already in use: set BUILDD_PG_PORT (or BUILDD_TEST_PG_PORT for tests)"
  fi
  log "starting PostgreSQL on 127.0.0.1:$port (log: $dir/log)"
  pg_as_owner "$PG_BIN/pg_ctl" start -W -D "$dir/data" -l "$dir/log" >/dev/null 9>&- 8>&- ||
    die "pg_ctl start failed; see $dir/log"
  for ((i = 1; i <= PG_START_TIMEOUT * 10; i++)); do
    if pg_ready "$port"; then
      _pg_require_password "$dir" "$port"
      return 0
    fi
    if ((i % 10 == 0)) && ! pg_running "$dir"; then
      show_log_tail "$dir/log"
      die "PostgreSQL exited during start-up"
    fi
    sleep 0.1
  done
  show_log_tail "$dir/log"
  die "PostgreSQL did not accept connections on port $port within ${PG_START_TIMEOUT}s"
}

# Sets the password (a cluster made while it trusted every local user has
# none) and makes every login need it from now on.
_pg_require_password() {
  local dir=$1 port=$2
  if ! grep -q '^local all all scram-sha-256$' "$dir/data/pg_hba.conf" 2>/dev/null; then
    log "PostgreSQL in $dir: setting the password and requiring it (scram-sha-256)"
    # psql expands :'pw' (quoted) only in what it reads, not in -c.
    echo "ALTER ROLE buildd PASSWORD :'pw'" |
      pg_client "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$port" -U buildd -d postgres \
        -v "pw=$PG_PASSWORD" >/dev/null ||
      die "cannot set the password of PostgreSQL in $dir"
  fi
  _pg_write_hba "$dir"
  pg_as_owner "$PG_BIN/pg_ctl" reload -D "$dir/data" >/dev/null 9>&- 8>&- ||
    die "pg_ctl reload failed; see $dir/log"
}

pg_stop() {
  local dir=$1
  pg_running "$dir" || return 0
  log "stopping PostgreSQL in $dir"
  pg_as_owner "$PG_BIN/pg_ctl" stop -D "$dir/data" -m fast -w -t 60 >/dev/null 9>&- 8>&- ||
    warn "pg_ctl stop failed for $dir; see $dir/log"
}

# pg_ensure_database PORT NAME
pg_ensure_database() {
  local port=$1 name=$2 found
  found=$(pg_client "$PG_BIN/psql" -X -q -At -h 127.0.0.1 -p "$port" -U buildd -d postgres \
    -c "SELECT 1 FROM pg_database WHERE datname = '$name'") || die "cannot query PostgreSQL on port $port"
  if [[ $found != 1 ]]; then
    log "creating database $name"
    pg_client "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U buildd "$name" ||
      die "createdb $name failed"
  fi
}
