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
# What each user needs (queues from mp3core/contract.py; declare_queue declares a queue and its .dlq):
#   configure  queue.declare of its queues and their .dlq
#   write      publishing goes through the default exchange, which permissions name "amq.default";
#              RabbitMQ checks the exchange only, so this write reaches every queue by routing key
#   read       consuming; RabbitMQ also demands read on a queue declared with x-dead-letter-exchange
#              (and write on that exchange, the default one), so whoever declares `video` or `mp3` reads it
set -euo pipefail

CTL=(${RABBITMQCTL:-rabbitmqctl})
S="${QUEUE_SUFFIX:-}"
VIDEO="video$S" MP3="mp3$S"

password() { # password VARIABLE: from the environment, else from $PASSWORD_DIR/VARIABLE
    local value="${!1:-}"
    [[ -n "$value" || -z "${PASSWORD_DIR:-}" ]] || value="$(cat "$PASSWORD_DIR/$1")"
    [[ -n "$value" ]] || { echo "$1 is not set" >&2; return 1; }
    printf '%s' "$value"
}

USERS="$("${CTL[@]}" -q list_users --no-table-headers | cut -f1)"

ensure_user() { # ensure_user NAME PASSWORD CONFIGURE WRITE READ
    if grep -qxF "$1" <<<"$USERS"; then
        "${CTL[@]}" -q authenticate_user "$1" "$2" >/dev/null 2>&1 || "${CTL[@]}" -q change_password "$1" "$2"
    else
        "${CTL[@]}" -q add_user "$1" "$2" >/dev/null
    fi
    "${CTL[@]}" -q set_permissions -p / "$1" "$3" "$4" "$5"
}

# Read first, so a missing password stops the script (set -e) before any user is touched.
gateway="$(password GATEWAY_PASSWORD)"
converter="$(password CONVERTER_PASSWORD)"
notification="$(password NOTIFICATION_PASSWORD)"

ensure_user mp3-gateway "$gateway" \
    "^$VIDEO(\\.dlq)?\$" '^amq\.default$' "^$VIDEO\$"
ensure_user mp3-converter "$converter" \
    "^($VIDEO|$MP3)(\\.dlq)?\$" '^amq\.default$' "^($VIDEO|$MP3)\$"
ensure_user mp3-notification "$notification" \
    "^$MP3(\\.dlq)?\$" '^amq\.default$' "^$MP3\$"
