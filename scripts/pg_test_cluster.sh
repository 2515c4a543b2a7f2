#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the test suite: a temp dir, a free loopback port, trust auth on 127.0.0.1 only,
# durability off (nothing in it outlives the run). The tests read MISTRAL_GATEWAY_TEST_POSTGRES_URL.
#
#   scripts/pg_test_cluster.sh run make test      start, run the command with the URL exported, always stop
#   eval "$(scripts/pg_test_cluster.sh start)"     exports MISTRAL_GATEWAY_TEST_POSTGRES_URL and ..._DIR
#   scripts/pg_test_cluster.sh stop [DIR]          stops the cluster and removes DIR (default: ..._DIR)
#
# PostgreSQL's server binaries are found on PATH or under /usr/lib/postgresql/<version>/bin; when there are none and
# we are root, they are installed from Debian packages (apt-get update only if the install fails without it). Run as
# root (CI), the server runs as the `postgres` user, which refuses to run as root.
set -euo pipefail

log() { echo "pg_test_cluster: $*" >&2; }

find_bindir() {
  local initdb
  initdb=$(command -v initdb 2>/dev/null || true)
  if [[ -z $initdb ]]; then
    initdb=$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
  fi
  [[ -n $initdb && -x $initdb ]] && dirname "$(readlink -f "$initdb")"
}

install_postgres() {
  [[ $(id -u) -eq 0 ]] || { log "PostgreSQL is not installed (apt-get install postgresql, as root)"; exit 1; }
  log "installing PostgreSQL from Debian packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q postgresql >&2 || { apt-get update -q >&2 && apt-get install -y -q postgresql >&2; }
}

# Run a command as the cluster's owner: ourselves, or `postgres` when we are root.
as_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# Memory-backed when possible: each test creates and drops a database, which on a busy disk takes a second.
# As root the dir must be reachable by `postgres`, so not a private TMPDIR.
cluster_parent() {
  if [[ -d /dev/shm && -w /dev/shm ]]; then
    echo /dev/shm
  elif [[ $(id -u) -eq 0 ]]; then
    echo /tmp
  else
    echo "${TMPDIR:-/tmp}"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start() {
  local bindir dir port
  bindir=$(find_bindir) || { install_postgres; bindir=$(find_bindir) || { log "no initdb after install"; exit 1; }; }
  dir=$(mktemp -d "$(cluster_parent)/mg-pgtest.XXXXXX")
  mkdir -p "$dir/data" "$dir/sock"
  if [[ $(id -u) -eq 0 ]]; then
    chown -R postgres: "$dir"
  fi
  as_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth=reject --no-sync -E UTF8 --locale=C.UTF-8 \
    >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; rm -rf "$dir"; exit 1; }
  # The only way in: TCP from 127.0.0.1 as postgres, without a password (the socket dir is the owner's only).
  printf 'local all postgres peer\nhost all postgres 127.0.0.1/32 trust\n' | as_owner tee "$dir/data/pg_hba.conf" >/dev/null
  cat <<EOF | as_owner tee -a "$dir/data/postgresql.conf" >/dev/null
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/sock'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  local tries=0
  until port=$(free_port) && as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port" start >/dev/null; do
    tries=$((tries + 1))  # the port may have been taken between the probe and the bind
    if [[ $tries -ge 3 ]]; then
      cat "$dir/server.log" >&2 || true
      rm -rf "$dir"
      exit 1
    fi
  done
  echo "$bindir" >"$dir/bindir"
  echo "export MISTRAL_GATEWAY_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
  echo "export MISTRAL_GATEWAY_TEST_POSTGRES_DIR=$dir"
  log "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($dir)"
}

stop() {
  local dir=${1:-${MISTRAL_GATEWAY_TEST_POSTGRES_DIR:-}}
  [[ -n $dir && -d $dir ]] || { log "no cluster dir given"; exit 1; }
  [[ -f $dir/bindir && -d $dir/data ]] || { log "$dir is not a test cluster"; exit 1; }
  as_owner "$(cat "$dir/bindir")/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}

run() {
  [[ $# -gt 0 ]] || { log "run: which command?"; exit 2; }
  local exports
  exports=$(start)
  eval "$exports"
  trap 'stop "$MISTRAL_GATEWAY_TEST_POSTGRES_DIR"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  "$@"
}

case "${1:-}" in
  start) start ;;
  stop) shift; stop "$@" ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 start | stop [DIR] | run COMMAND [ARGS...]" >&2; exit 2 ;;
esac
