"""The embedded runtime: a private Mosquitto and PostgreSQL (TimescaleDB) for `ioc`, benchmarks and tests."""
