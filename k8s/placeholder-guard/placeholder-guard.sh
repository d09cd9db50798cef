#!/bin/sh
# Stops a broker or database pod whose Secrets still hold the repository's dev-only placeholders unless DEV_MODE
# is on, as the services refuse them (mp3core/mp3core/settings.py). Run by each server's init container, with the
# server's own image: POSIX sh, grep, sed and tr only. It prints key names, never a value.
#
#   sh placeholder-guard.sh [ROOT]
#
# ROOT (default /run/placeholder-guard) holds one folder per Secret, named after it, with one file per key (a
# Secret volume). DEV_MODE (ConfigMap infra-config) is read as the services read it: 1, true, yes or on, in any
# case, is on; anything else, unset or empty included, is off. Exit 0: nothing to refuse; 1: a placeholder with
# DEV_MODE off; 2: nothing to check or a file that cannot be read (a wiring mistake, never a pass).
set -u

root="${1:-/run/placeholder-guard}"
marker="dev-only"

dev_mode() {
    word="$(printf '%s\n' "${DEV_MODE:-}" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//' | tr '[:upper:]' '[:lower:]')"
    case "$word" in
        1 | true | yes | on) return 0 ;;
        *) return 1 ;;
    esac
}

found=""
checked=0
for folder in "$root"/*/; do
    [ -d "$folder" ] || continue
    secret="$(basename "$folder")"
    # A key may start with a dot; the volume's own entries (..data and its timestamped folder) start with two.
    for file in "$folder"* "$folder".[!.]*; do
        # A pattern that matched nothing stays as it is; a key that is there but unreadable (a dangling link)
        # is grep's error below, not a pass.
        [ -e "$file" ] || [ -L "$file" ] || continue
        checked=$((checked + 1))
        grep -qF -- "$marker" "$file"
        case $? in
            0) found="${found:+$found, }$secret/$(basename "$file")" ;;
            1) ;;
            *) echo "placeholder-guard: cannot read $secret/$(basename "$file")" >&2; exit 2 ;;
        esac
    done
done

if [ "$checked" -eq 0 ]; then
    echo "placeholder-guard: no Secret mounted under $root, nothing to check" >&2
    exit 2
fi
if [ -z "$found" ]; then
    echo "placeholder-guard: no dev-only placeholder in $checked Secret values"
    exit 0
fi
if dev_mode; then
    echo "placeholder-guard: DEV_MODE is on, accepting the dev-only placeholders in $found"
    exit 0
fi
echo "placeholder-guard: refusing to start: dev-only placeholder in Secret/key $found; replace these values" \
    "(k8s/README.md, \"Secrets\") or, for development only, set DEV_MODE \"true\" in ConfigMap infra-config" >&2
exit 1
