#!/bin/sh
# Runs once, when the timescaledb container initialises an empty data volume
# (mounted as /docker-entrypoint-initdb.d/100_ioc_grafana_reader.sh, after the image's own
# 000_install_timescaledb.sh and 001_timescaledb_tune.sh).
# Creates "grafana", a login role that can read every table, present and future, and write none.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v pw="${IOC_GRAFANA_DB_PASSWORD:?IOC_GRAFANA_DB_PASSWORD is not set}" <<'SQL'
CREATE ROLE grafana LOGIN PASSWORD :'pw';
GRANT pg_read_all_data TO grafana;
ALTER ROLE grafana SET default_transaction_read_only = on;
ALTER ROLE grafana SET statement_timeout = '60s';
SQL
