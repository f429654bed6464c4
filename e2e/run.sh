#!/usr/bin/env bash
# Black-box end-to-end tests for luxchat.
#
# Builds ./cmd/luxchat, starts it on a free loopback port with a throw-away
# data dir, then drives it with real Matrix client libraries:
#   1. e2e/js  — matrix-js-sdk (node --test)
#   2. e2e/nio — matrix-nio (Debian's python3-matrix-nio, unittest)
# Exits non-zero if the build, the server start or any test fails.
#
# Environment:
#   LUXCHAT_E2E_DATABASE  "sqlite" (default), a postgres://… DSN, or "postgres":
#                         a throw-away database created (and dropped) through
#                         the admin DSN in LUXCHAT_TEST_POSTGRES (default
#                         postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable)
#   LUXCHAT_E2E_URL       test an already running server instead (no build/start)
#   LUXCHAT_E2E_SUITES    suites to run, default "js nio fed"; fed starts two more
#                         servers that federate over TLS (a CA made for the run)
#                         and runs the E2EE scenario with one user on each
#   LUXCHAT_E2E_KEEP=1    keep the temp dir (binary, config, server log)
#   LUXCHAT_E2E_VERBOSE=1 client-library debug logging
set -euo pipefail

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$E2E_DIR/.." && pwd)"
DATABASE="${LUXCHAT_E2E_DATABASE:-sqlite}"
SUITES="${LUXCHAT_E2E_SUITES:-js nio fed}"
FED_PIDS=()
FED_PG_DB=
NIO_PYTHON=/usr/bin/python3 # Debian's python, which python3-matrix-nio installs into
READY_TIMEOUT_S=30
JS_TIMEOUT_S=300 # the whole js suite: ~60 s on a quiet machine, more than twice that at a load of 15+
NIO_TIMEOUT_S=120

WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/luxchat-e2e.XXXXXX")"
SERVER_PID=""
PG_ADMIN_DSN=""
PG_DB=""
SERVER_LOG="$WORK_DIR/server.log"

log() { printf '[e2e] %s\n' "$*"; }

print_server_log() {
  if [[ -s "$SERVER_LOG" ]]; then
    log "---- last 60 lines of the server log ($SERVER_LOG) ----"
    tail -n 60 "$SERVER_LOG" | sed 's/^/[server] /'
    log "---- end of server log ----"
  fi
}

cleanup() {
  local rc=$?
  for pid in "${FED_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ -n "$PG_DB" ]]; then
    psql "$PG_ADMIN_DSN" -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null 2>&1 ||
      log "warning: could not drop database $PG_DB"
  fi
  if [[ -n "$FED_PG_DB" ]]; then
    psql "$PG_ADMIN_DSN" -q -c "DROP DATABASE IF EXISTS \"$FED_PG_DB\" WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  if [[ "${LUXCHAT_E2E_KEEP:-}" == 1 ]]; then
    log "kept $WORK_DIR"
  else
    rm -rf "$WORK_DIR"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

as_root() {
  if [[ "$(id -u)" == 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi
}

# ---------------------------------------------------------------- installs ---
ensure_js_deps() {
  command -v node >/dev/null || { log "node is not installed"; return 1; }
  local major
  major="$(node -p 'process.versions.node.split(".")[0]')"
  if ((major < 20)); then
    log "Node >= 20 required, found $(node --version)"
    return 1
  fi
  # Reinstall when node_modules is missing or older than the lock file.
  if [[ ! -f "$E2E_DIR/js/node_modules/.package-lock.json" ||
    "$E2E_DIR/js/package-lock.json" -nt "$E2E_DIR/js/node_modules/.package-lock.json" ]]; then
    log "installing JS dependencies (npm ci)"
    (cd "$E2E_DIR/js" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

ensure_nio() {
  if "$NIO_PYTHON" -c 'import nio, olm' 2>/dev/null; then return 0; fi
  log "installing python3-matrix-nio and python3-olm (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  if ! as_root apt-get install -y -q python3-matrix-nio python3-olm; then
    as_root apt-get update -q
    as_root apt-get install -y -q python3-matrix-nio python3-olm
  fi
  "$NIO_PYTHON" -c 'import nio, olm'
}

for suite in $SUITES; do
  case "$suite" in
  js | fed) ensure_js_deps ;;
  nio) ensure_nio ;;
  *)
    log "unknown suite '$suite' (known: js nio fed)"
    exit 2
    ;;
  esac
done

# ------------------------------------------------------------------ server ---
free_port() {
  "$NIO_PYTHON" - <<'EOF' 2>/dev/null || python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

if [[ -n "${LUXCHAT_E2E_URL:-}" ]]; then
  BASE_URL="${LUXCHAT_E2E_URL%/}"
  log "using already running server at $BASE_URL"
else
  log "building luxchat"
  if ! (cd "$REPO_DIR" && go build -o "$WORK_DIR/luxchat" ./cmd/luxchat); then
    log "FAILED: go build ./cmd/luxchat"
    exit 1
  fi

  if [[ "$DATABASE" == postgres ]]; then
    PG_ADMIN_DSN="${LUXCHAT_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"
    command -v psql >/dev/null || { log "FAILED: LUXCHAT_E2E_DATABASE=postgres needs psql"; exit 1; }
    db="luxchat_e2e_$(date +%s)_$$"
    if ! psql "$PG_ADMIN_DSN" -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$db\"" >/dev/null; then
      log "FAILED: could not create a PostgreSQL database through $PG_ADMIN_DSN"
      exit 1
    fi
    PG_DB="$db"
    # Same server and credentials, the new database as the path.
    DATABASE="$("$NIO_PYTHON" -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$PG_ADMIN_DSN" "$db")"
  fi

  PORT="$(free_port)"
  TURN_PORT="$(free_port)"
  BASE_URL="http://127.0.0.1:$PORT"
  mkdir -p "$WORK_DIR/data"
  # js/test/webhooks.test.js registers an administrator with it.
  export LUXCHAT_E2E_SHARED_SECRET="e2e-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  cat >"$WORK_DIR/config.yaml" <<EOF
server_name: localhost
listen:
  client: "127.0.0.1:$PORT"
  turn: "127.0.0.1:$TURN_PORT"
data_dir: "$WORK_DIR/data"
database: "$DATABASE"
registration:
  mode: open
  shared_secret: "$LUXCHAT_E2E_SHARED_SECRET"
rate_limits:
  enabled: false
# The chat scenarios test plaintext messaging; end-to-end encryption has its
# own test (js/test/e2ee.test.js), which asks for it explicitly.
encryption:
  default: false
# js/test/push.test.js runs its push gateway on loopback.
push:
  deny_networks: []
# js/test/call.test.js calls between two browsers through the embedded TURN.
turn:
  enabled: true
  shared_secret: "e2e-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
EOF
  db_desc="$DATABASE"
  [[ "$DATABASE" == postgres* ]] && db_desc="postgres"
  log "starting luxchat on $BASE_URL (database: $db_desc)"
  "$WORK_DIR/luxchat" serve --config "$WORK_DIR/config.yaml" >"$SERVER_LOG" 2>&1 &
  SERVER_PID=$!

  deadline=$((SECONDS + READY_TIMEOUT_S))
  until curl -fs -o /dev/null --max-time 2 "$BASE_URL/health" &&
    curl -fs -o /dev/null --max-time 2 "$BASE_URL/_matrix/client/versions"; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      wait "$SERVER_PID" && status=0 || status=$?
      log "FAILED: luxchat exited during startup (exit status $status)"
      SERVER_PID=""
      print_server_log
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      log "FAILED: luxchat not ready after ${READY_TIMEOUT_S}s (GET /health and /_matrix/client/versions)"
      print_server_log
      exit 1
    fi
    sleep 0.2
  done
  log "server ready: $(curl -fsS --max-time 2 "$BASE_URL/_matrix/client/versions" | head -c 300)"
fi

export LUXCHAT_E2E_URL="$BASE_URL"

# ------------------------------------------------------------------ suites ---
declare -A RESULT=()
overall=0

run_js() {
  (cd "$E2E_DIR/js" && timeout --kill-after=10 "$JS_TIMEOUT_S" \
    node --test --test-reporter=tap --test-concurrency=1 --test-force-exit \
    --test-timeout=$((JS_TIMEOUT_S * 1000 - 10000)) test/)
}

run_nio() {
  local rc=0
  (cd "$E2E_DIR/nio" && timeout --kill-after=10 "$NIO_TIMEOUT_S" "$NIO_PYTHON" -u test_chat.py) || rc=$?
  # End-to-end encryption with libolm (python3-olm).
  (cd "$E2E_DIR/nio" && timeout --kill-after=10 "$NIO_TIMEOUT_S" "$NIO_PYTHON" -u test_e2ee.py) || rc=$?
  return "$rc"
}

# Two servers named by their federation addresses (IP literals, as the spec
# allows), with certificates from a CA made for this run. The first uses the
# run's database, the second SQLite.
start_fed_servers() {
  local dir="$WORK_DIR/fed"
  mkdir -p "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=luxchat e2e CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$dir/tls.key" -out "$dir/tls.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$dir/ext.cnf"
  openssl x509 -req -in "$dir/tls.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 2 \
    -extfile "$dir/ext.cnf" -out "$dir/tls.pem" 2>/dev/null
  local ports=() names=() urls=() i
  for i in 0 1 2 3; do ports+=("$(free_port)"); done
  names=("127.0.0.1:${ports[1]}" "127.0.0.1:${ports[3]}")
  # The first server gets its own database of the run's engine.
  local fed_db=sqlite
  if [[ -n "$PG_DB" ]]; then
    FED_PG_DB="${PG_DB}_fed"
    psql "$PG_ADMIN_DSN" -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$FED_PG_DB\"" >/dev/null || return 1
    fed_db="${DATABASE%/"$PG_DB"*}/$FED_PG_DB${DATABASE#*/"$PG_DB"}"
  fi
  for i in 0 1; do
    local db=sqlite
    ((i == 0)) && db="$fed_db"
    mkdir -p "$dir/$i"
    cat >"$dir/$i.yaml" <<EOF
server_name: "${names[$i]}"
listen:
  client: "127.0.0.1:${ports[$((i * 2))]}"
  federation: "127.0.0.1:${ports[$((i * 2 + 1))]}"
tls:
  cert_file: "$dir/tls.pem"
  key_file: "$dir/tls.key"
data_dir: "$dir/$i"
database: "$db"
registration:
  mode: open
rate_limits:
  enabled: false
federation:
  enabled: true
  trusted_ca_file: "$dir/ca.pem"
  allowed_servers: ["${names[0]}", "${names[1]}"]
  deny_networks: []
EOF
    "$WORK_DIR/luxchat" serve --config "$dir/$i.yaml" >"$dir/$i.log" 2>&1 &
    FED_PIDS+=($!)
    urls+=("http://127.0.0.1:${ports[$((i * 2))]}")
  done
  local u deadline
  for u in "${urls[@]}"; do
    deadline=$((SECONDS + READY_TIMEOUT_S))
    until curl -fs -o /dev/null --max-time 2 "$u/health"; do
      if ((SECONDS >= deadline)); then
        log "FAILED: federating server $u not ready"
        tail -n 30 "$dir"/*.log
        return 1
      fi
      sleep 0.2
    done
  done
  FED_URL_A="${urls[0]}"
  FED_URL_B="${urls[1]}"
  log "federating servers ready: ${names[*]}"
}

# End-to-end encryption across two servers: the E2EE scenario with Alice on
# the first server and Bob on the second.
run_fed() {
  start_fed_servers || return 1
  local rc=0 i
  (cd "$E2E_DIR/js" && LUXCHAT_E2E_URL="$FED_URL_A" LUXCHAT_E2E_URL_B="$FED_URL_B" timeout --kill-after=10 "$JS_TIMEOUT_S" \
    node --test --test-reporter=tap --test-concurrency=1 --test-force-exit \
    --test-timeout=$((JS_TIMEOUT_S * 1000 - 10000)) test/e2ee.test.js test/fedrooms.test.js test/backfill.test.js) || rc=$?
  if ((rc != 0)); then
    for i in 0 1; do
      log "---- last 40 lines of federating server $i ----"
      tail -n 40 "$WORK_DIR/fed/$i.log" | sed "s/^/[fed $i] /"
    done
  fi
  return "$rc"
}

for suite in $SUITES; do
  log "==== running $suite suite ===="
  start=$SECONDS
  if "run_$suite"; then
    RESULT[$suite]="passed"
  else
    rc=$?
    if ((rc == 124 || rc == 137)); then RESULT[$suite]="TIMED OUT"; else RESULT[$suite]="FAILED (exit $rc)"; fi
    overall=1
  fi
  log "$suite suite: ${RESULT[$suite]} in $((SECONDS - start))s"
done

if [[ -n "$SERVER_PID" ]] && ! kill -0 "$SERVER_PID" 2>/dev/null; then
  log "FAILED: luxchat died while the tests ran"
  SERVER_PID=""
  overall=1
fi

((overall == 0)) || print_server_log

log "==== summary ===="
for suite in $SUITES; do log "$suite: ${RESULT[$suite]}"; done
if ((overall == 0)); then log "all e2e suites passed"; else log "e2e FAILED"; fi
exit "$overall"
