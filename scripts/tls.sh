#!/usr/bin/env bash
# TLS for the minikube Ingress: a local certificate authority and a certificate for the Ingress host, made with
# openssl into the git-ignored state folder, and the Kubernetes TLS Secret the Ingress names.
#
#   scripts/tls.sh cert     make the CA (once) and the host certificate (again when missing or expiring
#                           within 30 days); idempotent; prints where they are
#   scripts/tls.sh secret   create or update Secret mp3converter-tls in namespace mp3converter (kubectl)
#
# The CA is name-constrained to the host: trusting it (k8s/README.md, "TLS") lets it vouch for
# mp3converter.com and nothing else, should its key ever leak. The keys stay in $STATE/tls (mode 600).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${STATE_DIR:-$ROOT/.state}"
DIR="$STATE/tls"
HOST="${TLS_HOST:-mp3converter.com}"
NAMESPACE="${NAMESPACE:-mp3converter}"
SECRET="mp3converter-tls"    # the secretName in gateway/manifests/ingress.yaml
CA_DAYS=3650
CERT_DAYS=397                # the longest validity browsers accept for a server certificate
RENEW_S=$((30 * 86400))

log() { printf '[tls] %s\n' "$*" >&2; }

make_ca() {
    [[ -s "$DIR/ca.key" && -s "$DIR/ca.crt" ]] && return
    log "making the local CA in $DIR"
    openssl req -x509 -new -nodes -newkey rsa:3072 -sha256 -days "$CA_DAYS" \
        -keyout "$DIR/ca.key" -out "$DIR/ca.crt" \
        -subj "/O=mp3converter development/CN=mp3converter local CA" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" \
        -addext "nameConstraints=critical,permitted;DNS:$HOST,excluded;IP:0.0.0.0/0.0.0.0,excluded;IP:::/0:0:0:0:0:0:0:0" 2>/dev/null
    chmod 600 "$DIR/ca.key"
    rm -f "$DIR/$HOST.crt"  # a new CA: the old host certificate no longer chains to it
}

make_cert() {
    if [[ -s "$DIR/$HOST.crt" && -s "$DIR/$HOST.key" ]] \
        && openssl x509 -in "$DIR/$HOST.crt" -noout -checkend "$RENEW_S" >/dev/null; then
        return
    fi
    log "making the certificate for $HOST (valid $CERT_DAYS days)"
    local ext="$DIR/$HOST.ext"
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth" "subjectAltName=DNS:$HOST" "authorityKeyIdentifier=keyid" >"$ext"
    openssl req -new -nodes -newkey rsa:2048 -keyout "$DIR/$HOST.key" -out "$DIR/$HOST.csr" \
        -subj "/CN=$HOST" 2>/dev/null
    chmod 600 "$DIR/$HOST.key"
    openssl x509 -req -in "$DIR/$HOST.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" -CAcreateserial \
        -days "$CERT_DAYS" -sha256 -extfile "$ext" -out "$DIR/$HOST.crt" 2>/dev/null
    rm -f "$DIR/$HOST.csr" "$ext"
    openssl verify -CAfile "$DIR/ca.crt" "$DIR/$HOST.crt" >/dev/null
}

cert() {
    command -v openssl >/dev/null || { log "ERROR: openssl is not installed"; exit 1; }
    mkdir -p "$DIR"
    chmod 700 "$DIR"
    make_ca
    make_cert
    log "CA: $DIR/ca.crt (trust it: k8s/README.md, \"TLS\")  certificate: $DIR/$HOST.crt  key: $DIR/$HOST.key"
}

secret() {
    cert
    # The namespace may not exist before the first deploy; kubectl apply -k adds its labels afterwards.
    kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
    kubectl -n "$NAMESPACE" create secret tls "$SECRET" --cert="$DIR/$HOST.crt" --key="$DIR/$HOST.key" \
        --dry-run=client -o yaml | kubectl label --local -f - -o yaml app.kubernetes.io/part-of=mp3converter \
        | kubectl apply -f -
}

case "${1:-}" in
    cert) cert ;;
    secret) secret ;;
    *) echo "usage: $0 cert|secret" >&2; exit 2 ;;
esac
