#!/usr/bin/env bash
# Creates or updates one RabbitMQ user per service, with permissions on its own queues only. Idempotent.
# Run by scripts/infra.sh against the local broker and by the broker pod's postStart hook (statefulset.yaml).
#
# Environment:
#   RABBITMQCTL              the rabbitmqctl command (default: rabbitmqctl), e.g. "rabbitmqctl -n rabbit@localhost"
#   GATEWAY_PASSWORD, CONVERTER_PASSWORD, NOTIFICATION_PASSWORD   the users' passwords, or
#   PASSWORD_DIR             a folder with files of those names instead (the pod mounts them from its Secret)
#   QUEUE_SUFFIX             a regex every queue name may carry (default: none). The local broker allows
#                            the tests' unique queue names (video_1a2b3c4d, tests/support.py: queue_names).
#
# What each user needs (names from mp3core/contract.py and mp3core/broker.py; contract.declare_queue declares
# only what a role needs). RabbitMQ checks: configure to declare or delete a queue or an exchange; write on an
# exchange to publish to it, on a queue to bind it; read on a queue to consume it, on an exchange to bind from
# it; declaring a queue with x-dead-letter-exchange X also needs read on the queue and write on X.
# Exchange <q> (the queue's own, routing key <q>) shares the queue's name, so "write <q>" means: publish to
# exchange <q>, which is bound to queue <q> only. No user may write to the default exchange (amq.default),
# which reaches every queue by its name, nor read a dead-letter queue <q>.dead (operators only).
#   publisher of <q>   configure <q> <q>.upgrade <q>.upgrade-lock   write <q> <q>.dlx <q>.upgrade   read <q> <q>.upgrade
#   consumer of <q>    configure <q> <q>.dlx <q>.dead               write <q>.dlx <q>.dead          read <q> <q>.dlx
#   (<q>.upgrade and <q>.upgrade-lock: publishers move a classic <q> of an earlier version to a quorum queue)
#   gateway: publishes video; converter: consumes video, publishes mp3; notification: consumes and publishes mp3
set -euo pipefail

CTL=(${RABBITMQCTL:-rabbitmqctl})
S="${QUEUE_SUFFIX:-}"
VIDEO="video$S" MP3="mp3$S"

password() { # password VARIABLE: from the environment, else from $PASSWORD_DIR/VARIABLE
    local value="${!1:-}"
    [[ -n "$value" || -z "${PASSWORD_DIR:-}" ]] || value="$(cat "$PASSWORD_DIR/$1")"
    [[ -n "$value" ]] || { echo "$1 is not set" >&2; return 1; }
    # rabbitmqctl reads a password from stdin as one line without its surrounding whitespace: refuse what it
    # would store differently from what the service sends (the services keep a password's spaces).
    if [[ "$value" == *$'\n'* || "$value" =~ ^[[:space:]] || "$value" =~ [[:space:]]$ ]]; then
        echo "$1 starts or ends with whitespace or holds a line break, which rabbitmqctl would drop" >&2
        return 1
    fi
    printf '%s' "$value"
}

USERS="$("${CTL[@]}" -q list_users --no-table-headers | cut -f1)"

ctl_with_password() { # ctl_with_password PASSWORD COMMAND USER: the password on stdin, never in a process's
    # arguments, which every local user can read (ps, /proc/PID/cmdline) while rabbitmqctl runs
    printf '%s' "$1" | "${CTL[@]}" -q "$2" "$3"
}

ensure_user() { # ensure_user NAME PASSWORD CONFIGURE WRITE READ
    if grep -qxF "$1" <<<"$USERS"; then
        ctl_with_password "$2" authenticate_user "$1" >/dev/null 2>&1 || ctl_with_password "$2" change_password "$1"
    else
        ctl_with_password "$2" add_user "$1" >/dev/null
    fi
    "${CTL[@]}" -q set_permissions -p / "$1" "$3" "$4" "$5"
}

# Read first, so a missing password stops the script (set -e) before any user is touched.
gateway="$(password GATEWAY_PASSWORD)"
converter="$(password CONVERTER_PASSWORD)"
notification="$(password NOTIFICATION_PASSWORD)"

ensure_user mp3-gateway "$gateway" \
    "^$VIDEO(\\.upgrade|\\.upgrade-lock)?\$" \
    "^$VIDEO(\\.dlx|\\.upgrade)?\$" \
    "^$VIDEO(\\.upgrade)?\$"
ensure_user mp3-converter "$converter" \
    "^($VIDEO(\\.dlx|\\.dead)?|$MP3(\\.upgrade|\\.upgrade-lock)?)\$" \
    "^($VIDEO\\.(dlx|dead)|$MP3(\\.dlx|\\.upgrade)?)\$" \
    "^($VIDEO(\\.dlx)?|$MP3(\\.upgrade)?)\$"
ensure_user mp3-notification "$notification" \
    "^$MP3(\\.dlx|\\.dead|\\.upgrade|\\.upgrade-lock)?\$" \
    "^$MP3(\\.dlx|\\.dead|\\.upgrade)?\$" \
    "^$MP3(\\.dlx|\\.upgrade)?\$"
