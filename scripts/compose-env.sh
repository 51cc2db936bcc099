#!/bin/sh
# Writes .env beside docker-compose.yml with a random secret for every password the stack requires, once:
# an existing .env is left as it is (compose refuses to start while any of them is missing).
set -eu
cd "$(dirname "$0")/.."
if [ -e .env ]; then
    echo ".env exists: left as it is"
    exit 0
fi
secret() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }
umask 077
cat > .env <<ENV
IOC_DB_PASSWORD=$(secret)
IOC_GRAFANA_DB_PASSWORD=$(secret)
GRAFANA_ADMIN_PASSWORD=$(secret)
IOC_MQTT_ADMIN_PASSWORD=$(secret)
IOC_MQTT_INGEST_PASSWORD=$(secret)
IOC_MQTT_COMMANDS_PASSWORD=$(secret)
IOC_MQTT_ALERTS_PASSWORD=$(secret)
ENV
echo "wrote .env (mode 0600) with new random secrets"
