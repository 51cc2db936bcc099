"""docker-compose.yml checked statically (no Docker engine here; the same services run natively in the integration
tests): every serving service has a healthcheck, no secret has a default, images are pinned, plain MQTT is off."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|KEY")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def _text() -> str:
    return COMPOSE.read_text(encoding="utf-8")


def test_every_serving_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    services = compose["services"]
    serving = {name for name, svc in services.items() if svc.get("ports")} | {"timescaledb"}
    assert serving == {"timescaledb", "broker", "grafana", "api"}
    for name in serving:
        check = services[name].get("healthcheck")
        assert check and check["test"], name


def test_no_secret_has_a_default_and_each_is_required() -> None:
    references = re.findall(r"\$\{([A-Z0-9_]+)(:?[-?][^}]*)?\}", _text())
    secrets = {(name, rest) for name, rest in references if SECRET_NAME.search(name)}
    assert {name for name, _ in secrets} >= {
        "IOC_DB_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
        "IOC_GRAFANA_DB_PASSWORD",
        "IOC_MQTT_INGEST_PASSWORD",
    }
    for name, rest in secrets:
        assert rest.startswith(":?"), f"{name} must be required (${{{name}:?…}}), found {rest!r}"
    assert "change-me" not in _text()
    assert "admin/admin" not in _text()


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        image = svc.get("image", "")
        if "build" in svc:
            continue  # ioc:latest is built here from deploy/Dockerfile, whose bases are pinned below
        assert ":" in image and not image.endswith(":latest"), (name, image)
    dockerfile = (COMPOSE.parent / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    bases = re.findall(r"^FROM (\S+)", dockerfile, flags=re.MULTILINE)
    assert bases and all(":" in b and not b.endswith(":latest") for b in bases), bases


def test_the_broker_listens_on_mqtts_only_and_the_services_use_their_roles_accounts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    broker = services["broker"]
    assert broker["ports"] == ["${IOC_MQTTS_PORT:-8883}:8883"]
    assert broker["environment"]["IOC_BROKER_PLAIN"] == "false"
    env = services["ingest"]["environment"]
    assert env["IOC_MQTT_INGEST_URL"].startswith("mqtts://ioc-ingest:")
    assert env["IOC_MQTT_COMMANDS_URL"].startswith("mqtts://ioc-commands:")
    assert env["IOC_MQTT_ALERTS_URL"].startswith("mqtts://ioc-alerts:")
    assert all("1883" not in str(svc.get("ports", "")) for svc in services.values())
