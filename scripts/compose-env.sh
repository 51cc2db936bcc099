#!/bin/sh
# Writes .env beside docker-compose.yml from .env.example, once: every variable left empty there (the secrets)
# gets a new random value, every other line is copied as it is. An existing .env is left as it is (compose
# refuses to start while any secret is missing).
set -eu
cd "$(dirname "$0")/.."
if [ -e .env ]; then
    echo ".env exists: left as it is"
    exit 0
fi
secret() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }
umask 077
tmp=.env.partial
: > "$tmp"
while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in
        [A-Z]*=) printf '%s%s\n' "$line" "$(secret)" >> "$tmp" ;;
        *) printf '%s\n' "$line" >> "$tmp" ;;
    esac
done < .env.example
mv "$tmp" .env
echo "wrote .env (mode 0600) with new random secrets"
