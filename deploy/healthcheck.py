"""Health checks of the compose stack's ioc services (docker-compose.yml `healthcheck:`), run by path inside the
ioc image: `python /usr/local/lib/ioc/healthcheck.py broker|ingest|analytics|api`. Exit 0 = healthy.

Each one tests readiness, not only a live process: the broker completes a TLS handshake with the center's CA,
ingest has a worker that reported within the last seconds while connected to the broker, the analytics job is not
behind, and the API answers `/readyz` (database, broker, ingest and analytics, as /readyz judges them)."""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import sys
import urllib.error
import urllib.request
from typing import Final

import psycopg

from store.readiness import analytics_lags, ingest_heartbeats

TIMEOUT_S: Final = 3.0
# As the API's /readyz judges them (api/routers/health.py): a worker beats every 2 s; a reading may wait 2 minutes.
INGEST_STALE_S: Final = 10.0
ANALYTICS_BEHIND_S: Final = 120.0


def check_broker(port: int) -> str | None:
    """A TLS handshake on the mqtts port, verified against the broker's CA (SSL_CERT_FILE)."""
    context = ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE"))
    context.check_hostname = False  # the name devices use is in the certificate; here it is reached on 127.0.0.1
    try:
        with (
            socket.create_connection(("127.0.0.1", port), TIMEOUT_S) as raw,
            context.wrap_socket(raw) as tls,
        ):
            tls.getpeercert()
    except (OSError, ssl.SSLError) as exc:
        return f"no TLS handshake on {port}: {exc}"
    return None


def _database() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(os.environ["IOC_DATABASE_URL"], connect_timeout=int(TIMEOUT_S), autocommit=True)


def check_ingest() -> str | None:
    with _database() as conn:
        beats = ingest_heartbeats(conn)
    if any(b.connected and b.age_s < INGEST_STALE_S for b in beats):
        return None
    return "no ingest worker connected to the broker has reported lately"


def check_analytics() -> str | None:
    with _database() as conn:
        lags = analytics_lags(conn)
    worst = max(((lag.behind_s or 0.0) for lag in lags), default=0.0)
    return f"a reading has waited {worst:.0f} s for analytics" if worst > ANALYTICS_BEHIND_S else None


def check_api(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=TIMEOUT_S) as response:
            return None if response.status == 200 else f"/readyz answered {response.status}"
    except urllib.error.HTTPError as exc:
        return f"/readyz answered {exc.code}: {exc.read(500).decode(errors='replace')}"
    except OSError as exc:
        return f"/readyz did not answer: {exc}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("service", choices=("broker", "ingest", "analytics", "api"))
    parser.add_argument("--port", type=int, default=None, help="broker: 8883, api: 8000 (the defaults)")
    args = parser.parse_args()
    try:
        if args.service == "broker":
            problem = check_broker(args.port or 8883)
        elif args.service == "api":
            problem = check_api(args.port or 8000)
        elif args.service == "ingest":
            problem = check_ingest()
        else:
            problem = check_analytics()
    except psycopg.Error as exc:
        problem = f"the database does not answer: {type(exc).__name__}"
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
