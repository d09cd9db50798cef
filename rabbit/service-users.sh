#!/usr/bin/env bash
# Creates or updates one RabbitMQ user per service, with permissions on its own queues only. Idempotent.
# Run by scripts/infra.sh against the local broker and by the broker pod's postStart hook (statefulset.yaml).
#
# Environment:
#   RABBITMQCTL              the rabbitmqctl command (default: rabbitmqctl), e.g. "rabbitmqctl -n rabbit@localhost"
#   GATEWAY_PASSWORD, CONVERTER_PASSWORD, NOTIFICATION_PASSWORD   the users' passwords
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

ensure_user() { # ensure_user NAME PASSWORD CONFIGURE WRITE READ
    if "${CTL[@]}" -q list_users --no-table-headers | cut -f1 | grep -qxF "$1"; then
        "${CTL[@]}" -q authenticate_user "$1" "$2" >/dev/null 2>&1 || "${CTL[@]}" -q change_password "$1" "$2"
    else
        "${CTL[@]}" -q add_user "$1" "$2" >/dev/null
    fi
    "${CTL[@]}" -q set_permissions -p / "$1" "$3" "$4" "$5"
}

ensure_user mp3-gateway "${GATEWAY_PASSWORD:?}" \
    "^$VIDEO(\\.dlq)?\$" '^amq\.default$' "^$VIDEO\$"
ensure_user mp3-converter "${CONVERTER_PASSWORD:?}" \
    "^($VIDEO|$MP3)(\\.dlq)?\$" '^amq\.default$' "^($VIDEO|$MP3)\$"
ensure_user mp3-notification "${NOTIFICATION_PASSWORD:?}" \
    "^$MP3(\\.dlq)?\$" '^amq\.default$' "^$MP3\$"
