#!/usr/bin/env bash
# Installs (when missing) and starts the local servers the system and its tests need: RabbitMQ,
# MariaDB and FerretDB (MongoDB wire protocol, SQLite backend). Data, logs and pid files live under one
# git-ignored state folder, and so do the RabbitMQ URLs of the services' own users. Idempotent: a server whose pid file names a live process is left alone.
#
#   scripts/infra.sh up      install what is missing, start, wait until each accepts connections
#   scripts/infra.sh rabbitmq  only RabbitMQ (its nodes, joined, and the services' users): a node that is down
#                            is started again and rejoins
#   scripts/infra.sh down    stop what `up` started, by pid
#   scripts/infra.sh status  print what runs where
#   scripts/infra.sh packages  only install the Debian packages (the dev virtualenv builds against them)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${STATE_DIR:-$ROOT/.state}"
RABBITMQ_PORT="${INFRA_RABBITMQ_PORT:-5672}"
MARIADB_PORT="${INFRA_MARIADB_PORT:-3306}"
FERRETDB_PORT="${INFRA_FERRETDB_PORT:-27017}"
RABBITMQ_NODE="${INFRA_RABBITMQ_NODE:-rabbit@localhost}"
# INFRA_RABBITMQ_NODES=3: a cluster of three nodes on this machine. Node 1 is the default one above (port, name,
# state/rabbitmq); node i is <name>-i@<host> on port +i-1 with its state in state/rabbitmq-i, joined to node 1.
RABBITMQ_NODES="${INFRA_RABBITMQ_NODES:-1}"
RABBITMQ_DIST_PORT="${INFRA_RABBITMQ_DIST_PORT:-$((RABBITMQ_PORT + 20000))}" # Erlang distribution, node 1
FERRETDB_VERSION="v1.24.2"
FERRETDB_BIN="$STATE/bin/ferretdb-$FERRETDB_VERSION"
RABBIT_BIN=/usr/lib/rabbitmq/bin
MARIADB_SOCKET="$STATE/mariadb/mysqld.sock"

log() { printf '[infra] %s\n' "$*" >&2; }
die() { printf '[infra] ERROR: %s\n' "$*" >&2; exit 1; }

alive() { # alive PIDFILE: the pid file names a running process
    [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "$what did not come up in time (see logs under $STATE)"
        sleep 0.5
    done
}

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

install_packages() {
    local missing=()
    command -v rabbitmq-server >/dev/null || missing+=(rabbitmq-server)
    command -v mariadbd >/dev/null || missing+=(mariadb-server)
    command -v ffmpeg >/dev/null || missing+=(ffmpeg)
    # The web page's tests drive Debian's chromium headless through Debian's chromedriver (tests/browser/).
    command -v chromium >/dev/null || missing+=(chromium)
    command -v chromedriver >/dev/null || missing+=(chromium-driver)
    # mysqlclient (used by flask-mysqldb) builds against these.
    dpkg -s libmariadb-dev >/dev/null 2>&1 || missing+=(libmariadb-dev)
    dpkg -s pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
    command -v gcc >/dev/null || missing+=(gcc)
    python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
    if ((${#missing[@]})); then
        log "installing Debian packages: ${missing[*]}"
        as_root apt-get update -qq
        # policy-rc.d keeps the packages' own services from starting: we run our own instances.
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

install_ferretdb() {
    [[ -x "$FERRETDB_BIN" ]] && return
    command -v go >/dev/null || die "Go is needed to build FerretDB (apt-get install golang-go, Go >= 1.22)"
    log "building FerretDB $FERRETDB_VERSION (once)"
    # `go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2` builds a binary that panics at start:
    # the module zip lacks build/version/version.txt, which FerretDB's release build generates. So we
    # build the same module source with that one file added.
    local src build
    src="$(go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
    build="$STATE/build/ferretdb"
    rm -rf "$build" && mkdir -p "$build" "$STATE/bin"
    cp -r "$src/." "$build/" && chmod -R u+w "$build"
    echo "$FERRETDB_VERSION" >"$build/build/version/version.txt"
    (cd "$build" && go build -o "$FERRETDB_BIN" ./cmd/ferretdb)
    rm -rf "$build"
}

node_name() { # node_name I: the Erlang node name of node I
    if (($1 == 1)); then echo "$RABBITMQ_NODE"; else echo "${RABBITMQ_NODE%@*}-$1@${RABBITMQ_NODE#*@}"; fi
}
node_dir() { if (($1 == 1)); then echo "$STATE/rabbitmq"; else echo "$STATE/rabbitmq-$1"; fi; }
node_port() { echo $((RABBITMQ_PORT + $1 - 1)); }

start_rabbitmq() {
    [[ "$RABBITMQ_NODES" =~ ^[1-9]$ ]] || die "INFRA_RABBITMQ_NODES must be 1 to 9"
    local i
    for ((i = 1; i <= RABBITMQ_NODES; i++)); do start_rabbitmq_node "$i"; done
    for ((i = 2; i <= RABBITMQ_NODES; i++)); do join_rabbitmq_node "$i"; done
}

start_rabbitmq_node() { # start_rabbitmq_node I
    local node dir port
    node="$(node_name "$1")" dir="$(node_dir "$1")" port="$(node_port "$1")"
    if alive "$dir/rabbitmq.pid"; then log "RabbitMQ $node already running"; return; fi
    port_open "$port" && die "port $port is taken by a process this script did not start"
    mkdir -p "$dir/mnesia" "$dir/log"
    echo "[]." >"$dir/enabled_plugins" # no management plugin locally: nothing needs it
    cat >"$dir/rabbitmq.conf" <<EOF
listeners.tcp.1 = 127.0.0.1:$port
loopback_users.guest = true
# Same as the cluster (rabbit/configmap.yaml): long conversions and SMTP outages keep a message unacked.
consumer_timeout = 7200000
EOF
    (
        export RABBITMQ_NODENAME="$node" RABBITMQ_MNESIA_BASE="$dir/mnesia" \
            RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_PID_FILE="$dir/rabbitmq.pid" \
            RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" RABBITMQ_CONFIG_FILE="$dir/rabbitmq" \
            RABBITMQ_DIST_PORT="$((RABBITMQ_DIST_PORT + $1 - 1))" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
        log "starting RabbitMQ $node on port $port"
        # Run the server scripts directly (not Debian's su wrapper) so the state folder's owner runs it; from its
        # state folder, where Erlang writes crash dumps (MnesiaCore.*, erl_crash.dump) into the working directory.
        cd "$dir"
        "$RABBIT_BIN/rabbitmq-server" -detached >"$dir/log/startup.log" 2>&1
    )
    wait_for 120 "RabbitMQ pid file" test -s "$dir/rabbitmq.pid"
    "$RABBIT_BIN/rabbitmqctl" -n "$node" await_startup --timeout 120 >/dev/null ||
        die "RabbitMQ $node did not start (see $dir/log)"
    wait_for 30 "RabbitMQ port" port_open "$port"
}

join_rabbitmq_node() { # join_rabbitmq_node I: makes node I a member of node 1's cluster, once
    local node first
    node="$(node_name "$1")" first="$(node_name 1)"
    if "$RABBIT_BIN/rabbitmqctl" -n "$node" -q cluster_status --formatter json 2>/dev/null |
        python3 -c 'import json, sys; sys.exit(sys.argv[1] not in json.load(sys.stdin)["disk_nodes"])' "$first"; then
        return # a member already (a restarted node rejoins by itself)
    fi
    log "joining $node to $first"
    "$RABBIT_BIN/rabbitmqctl" -n "$node" -q stop_app
    "$RABBIT_BIN/rabbitmqctl" -n "$node" -q join_cluster "$first" || die "$node could not join $first"
    "$RABBIT_BIN/rabbitmqctl" -n "$node" -q start_app
}

rabbitmq_urls() { # rabbitmq_urls USER:PASSWORD: every node's URL, comma-separated (RABBITMQ_URL's format)
    local i urls=()
    for ((i = 1; i <= RABBITMQ_NODES; i++)); do urls+=("amqp://$1@127.0.0.1:$(node_port "$i")/%2F"); done
    (IFS=,; echo "${urls[*]}")
}

rabbitmq_users() {
    # One user per service, with permissions on its queues only (rabbit/service-users.sh, shared with the
    # cluster). Passwords are random, made once; each service's URL is kept in .state/rabbitmq/<service>.url,
    # where scripts/run.py, tests/support.py and bench/common.py read it.
    local dir="$STATE/rabbitmq" service password
    local -A passwords=()
    for service in gateway converter notification; do
        password=""
        [[ -s "$dir/$service.url" ]] && password="$(sed -n 's#^amqp://[^:]*:\([^@]*\)@.*#\1#p' "$dir/$service.url")"
        # Nothing a URL must escape (base64 with '+/' made URL-safe).
        [[ -n "$password" ]] || password="$(head -c 18 /dev/urandom | base64 | tr '+/' '_.')"
        passwords[$service]="$password"
        (umask 077 && rabbitmq_urls "mp3-$service:$password" >"$dir/$service.url")
    done
    # The tests' queues are named video_<8 hex> and mp3_<8 hex> (tests/support.py: queue_names).
    RABBITMQCTL="$RABBIT_BIN/rabbitmqctl -n $RABBITMQ_NODE" QUEUE_SUFFIX='(_[0-9a-f]{8})?' \
        GATEWAY_PASSWORD="${passwords[gateway]}" CONVERTER_PASSWORD="${passwords[converter]}" \
        NOTIFICATION_PASSWORD="${passwords[notification]}" "$ROOT/rabbit/service-users.sh" ||
        die "could not create the services' RabbitMQ users"
}

start_mariadb() {
    local dir="$STATE/mariadb"
    if alive "$dir/mariadb.pid"; then log "MariaDB already running"; return; fi
    port_open "$MARIADB_PORT" && die "port $MARIADB_PORT is taken by a process this script did not start"
    mkdir -p "$dir"
    if [[ ! -d "$dir/data/mysql" ]]; then
        log "initialising MariaDB data directory"
        mariadb-install-db --no-defaults --datadir="$dir/data" --user="$(id -un)" \
            --auth-root-authentication-method=socket --skip-test-db >"$dir/install.log" 2>&1 ||
            die "mariadb-install-db failed (see $dir/install.log)"
    fi
    log "starting MariaDB"
    nohup mariadbd --no-defaults --datadir="$dir/data" --socket="$MARIADB_SOCKET" \
        --port="$MARIADB_PORT" --bind-address=127.0.0.1 --pid-file="$dir/mariadb.pid" \
        --user="$(id -un)" --skip-name-resolve --log-error="$dir/error.log" \
        --max-connections=500 >/dev/null 2>&1 &
    wait_for 60 "MariaDB" mariadb-admin --no-defaults --socket="$MARIADB_SOCKET" ping
    # Anonymous accounts would shadow auth_user for local connections.
    mariadb --no-defaults --socket="$MARIADB_SOCKET" -e "DROP USER IF EXISTS ''@'localhost'; DROP USER IF EXISTS ''@'$(hostname)';"
    mariadb --no-defaults --socket="$MARIADB_SOCKET" <"${INIT_SQL:-$ROOT/mysql/init.sql}"
}

start_ferretdb() {
    local dir="$STATE/ferretdb"
    if alive "$dir/ferretdb.pid"; then log "FerretDB already running"; return; fi
    port_open "$FERRETDB_PORT" && die "port $FERRETDB_PORT is taken by a process this script did not start"
    mkdir -p "$dir/data"
    log "starting FerretDB"
    # GOGC=400: FerretDB decodes every document of a collection it scans (all of GridFS, docs/design.md), and at
    # Go's default GOGC=100 its garbage collector took about a fifth of that CPU; the heap stays under 100 MB.
    GOGC=400 nohup "$FERRETDB_BIN" --handler=sqlite --sqlite-url="file:$dir/data/" \
        --listen-addr="127.0.0.1:$FERRETDB_PORT" --state-dir="$dir" --telemetry=disable \
        --debug-addr="127.0.0.1:$((FERRETDB_PORT + 1))" --log-level=warn >"$dir/ferretdb.log" 2>&1 &
    echo $! >"$dir/ferretdb.pid"
    wait_for 60 "FerretDB" port_open "$FERRETDB_PORT"
}

stop_pidfile() { # stop_pidfile NAME PIDFILE
    if alive "$2"; then
        local pid
        pid="$(cat "$2")"
        log "stopping $1 (pid $pid)"
        kill "$pid"
        for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$2"
}

status() {
    local name pidfile port
    for spec in "RabbitMQ rabbitmq/rabbitmq.pid $RABBITMQ_PORT $(rabbitmq_urls guest:guest)" \
        "MariaDB mariadb/mariadb.pid $MARIADB_PORT mysql://127.0.0.1:$MARIADB_PORT/auth" \
        "FerretDB ferretdb/ferretdb.pid $FERRETDB_PORT mongodb://127.0.0.1:$FERRETDB_PORT/mp3converter"; do
        read -r name pidfile port url <<<"$spec"
        if alive "$STATE/$pidfile"; then
            printf '%-9s up    pid %-7s %s\n' "$name" "$(cat "$STATE/$pidfile")" "$url"
        else
            printf '%-9s down\n' "$name"
        fi
    done
}

case "${1:-up}" in
packages) install_packages ;;
rabbitmq)
    start_rabbitmq
    rabbitmq_users
    ;;
up)
    install_packages
    install_ferretdb
    start_rabbitmq
    rabbitmq_users
    start_mariadb
    start_ferretdb
    status
    ;;
down)
    stop_pidfile FerretDB "$STATE/ferretdb/ferretdb.pid"
    stop_pidfile MariaDB "$STATE/mariadb/mariadb.pid"
    for dir in "$STATE"/rabbitmq-[2-9]; do [[ -d "$dir" ]] && stop_pidfile "RabbitMQ ($dir)" "$dir/rabbitmq.pid"; done
    stop_pidfile RabbitMQ "$STATE/rabbitmq/rabbitmq.pid"
    ;;
status) status ;;
*) die "usage: $0 up|down|status|packages" ;;
esac
