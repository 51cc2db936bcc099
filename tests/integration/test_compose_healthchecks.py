"""deploy/healthcheck.py, the compose stack's health checks, run natively against the same services: each says
unhealthy until its service is really ready and healthy once it is."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from embedded.runtime import EmbeddedMosquitto, find_free_port
from tests.integration.conftest import ApiServer, RunningIngest, ScratchDatabase

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "healthcheck.py"
_COUNTER = itertools.count()


def _check(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *argv],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )


def test_ingest_is_healthy_only_while_a_connected_worker_reports(
    database: ScratchDatabase, run_ingest: Callable[[], RunningIngest]
) -> None:
    env = {"IOC_DATABASE_URL": database.url}
    before = _check("ingest", env=env)
    assert before.returncode == 1 and "no ingest worker" in before.stderr
    with run_ingest():
        assert _check("ingest", env=env).returncode == 0


def test_analytics_is_healthy_when_nothing_waits_and_the_database_answers(database: ScratchDatabase) -> None:
    assert _check("analytics", env={"IOC_DATABASE_URL": database.url}).returncode == 0
    down = _check("analytics", env={"IOC_DATABASE_URL": f"postgresql://ioc@127.0.0.1:{find_free_port()}/ioc"})
    assert down.returncode == 1 and "database does not answer" in down.stderr


def test_the_broker_is_healthy_when_a_tls_handshake_verifies_with_its_ca(runtime_root: Path) -> None:
    with EmbeddedMosquitto(runtime_root / f"health-mosquitto-{next(_COUNTER)}", auth=True, tls=True) as mq:
        assert mq.tls_port is not None
        ca = str(mq.root / "tls" / "ca.crt")
        healthy = _check("broker", "--port", str(mq.tls_port), env={"SSL_CERT_FILE": ca})
        assert healthy.returncode == 0, healthy.stderr
        plain = _check("broker", "--port", str(mq.port), env={"SSL_CERT_FILE": ca})  # not TLS: no handshake
        assert plain.returncode == 1 and "no TLS handshake" in plain.stderr


def test_the_api_is_healthy_when_readyz_answers_200(database: ScratchDatabase) -> None:
    closed = _check("api", "--port", str(find_free_port()), env={})
    assert closed.returncode == 1 and "/readyz did not answer" in closed.stderr
    server = ApiServer(database.url)
    with server:
        assert _check("api", "--port", str(server.port), env={}).returncode == 0
