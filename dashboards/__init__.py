"""Grafana dashboards as code: typed builders (grafana-foundation-sdk) for the center's dashboards, their folders
and the TimescaleDB datasource, written out for Grafana's file provisioning or upserted through its HTTP API.

Every dashboard reads the store's tables with SQL through the read-only datasource `ioc-timescaledb`; uids are
fixed so that provisioning replaces, never duplicates.
"""
