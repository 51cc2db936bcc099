"""The production stack checked statically (no Docker engine here; the same services run natively in the
integration tests): docker-compose.yml parsed, every service with a health check, a restart policy, resource
limits and a pinned image; the one-shot `migrate` waited for; every variable it reads in .env.example, no secret
with a default anywhere; the broker on mqtts only with its state on a volume; Grafana provisioned from what
`ioc dashboards export` writes; the ioc image slim, pinned, non-root and free of secrets."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

REPO: Final = Path(__file__).resolve().parents[2]
COMPOSE: Final = REPO / "docker-compose.yml"
ENV_EXAMPLE: Final = REPO / ".env.example"
DOCKERFILE: Final = REPO / "deploy" / "Dockerfile"
DOCKERIGNORE: Final = REPO / "deploy" / "Dockerfile.dockerignore"
SECRET_NAME: Final = re.compile(r"PASSWORD|SECRET|TOKEN|KEY")
# `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?message}`, `${NAME?message}`.
REFERENCE: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
IOC_SERVICES: Final = frozenset({"migrate", "broker", "ingest", "analytics", "api"})
LONG_RUNNING_RESTART: Final = frozenset({"always", "unless-stopped", "on-failure"})
# A pulled image's tag names a version (digits and dots), not a moving name like `latest` or `16`.
PINNED_TAG: Final = re.compile(r"^[^:@\s]+:v?\d+\.\d+\.\d+[\w.-]*$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def _strings(value: object) -> Iterator[str]:
    """Every string of the parsed document, keys included (comments are gone: compose does not read them)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _references(compose: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(name, operator, rest) of every variable reference; operator is '' for a bare `${NAME}`."""
    return [(m[1], m[2] or "", m[3] or "") for text in _strings(compose) for m in REFERENCE.finditer(text)]


def _env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example: not NAME=value: {line!r}"
            assert name not in values, f".env.example names {name} twice"
            values[name] = value
    return values


def _one_shot(services: dict[str, dict[str, Any]]) -> set[str]:
    return {name for name, svc in services.items() if str(svc.get("restart")) == "no"}


# --------------------------------------------------------------------------------------------- services


def test_the_stack_has_the_services_of_the_architecture(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {"timescaledb", "broker", "grafana", "migrate", "ingest", "analytics", "api"}


def test_every_service_has_a_restart_policy_and_only_migrate_runs_once(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        assert "restart" in svc, f"{name} has no restart policy"
    assert _one_shot(services) == {"migrate"}
    for name in set(services) - {"migrate"}:
        assert services[name]["restart"] in LONG_RUNNING_RESTART, (name, services[name]["restart"])


def test_every_long_running_service_has_a_health_check_that_tests_readiness(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in set(services) - _one_shot(services):
        check = services[name].get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name} has no health check"
        assert check["test"][0] in {"CMD", "CMD-SHELL"}, (name, check["test"])
        for key in ("interval", "timeout", "retries", "start_period"):
            assert key in check, f"{name}'s health check sets no {key}"
    tests = {name: " ".join(services[name]["healthcheck"]["test"]) for name in set(services) - {"migrate"}}
    # The ioc services' checks are deploy/healthcheck.py (copied into the image), each with its own mode.
    for name in IOC_SERVICES - {"migrate"}:
        assert f"/usr/local/lib/ioc/healthcheck.py {name}" in tests[name], tests[name]
    assert "pg_isready" in tests["timescaledb"]
    assert "/api/health" in tests["grafana"]


def test_the_healthcheck_script_offers_every_mode_and_the_image_ships_it() -> None:
    script = (REPO / "deploy" / "healthcheck.py").read_text(encoding="utf-8")
    assert 'choices=("broker", "ingest", "analytics", "api")' in script
    assert "/readyz" in script  # the API's readiness, not its liveness
    assert "COPY deploy/healthcheck.py /usr/local/lib/ioc/healthcheck.py" in DOCKERFILE.read_text(encoding="utf-8")


def test_the_ioc_services_wait_for_migrate_to_succeed(services: dict[str, dict[str, Any]]) -> None:
    assert services["migrate"]["command"] == ["db", "migrate"]
    assert services["migrate"]["depends_on"]["timescaledb"]["condition"] == "service_healthy"
    for name in IOC_SERVICES - {"migrate"}:
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
    for name in ("ingest", "analytics", "api"):
        assert services[name]["depends_on"]["broker"]["condition"] == "service_healthy", name


def test_every_service_has_resource_limits(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        limits = svc.get("deploy", {}).get("resources", {}).get("limits", {})
        assert float(limits.get("cpus", 0)) > 0, f"{name} has no CPU limit"
        assert re.fullmatch(r"\d+[kmg]", str(limits.get("memory", ""))), f"{name} has no memory limit"


def test_every_image_is_pinned_to_a_version(services: dict[str, dict[str, Any]]) -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    for name, svc in services.items():
        image = str(svc.get("image", ""))
        assert PINNED_TAG.match(image), f"{name}: {image!r} is not pinned to a version"
        if "build" in svc:
            assert image == f"ioc:{version}", f"{name}: the built image is tagged with the package version"


def test_the_database_image_matches_the_versions_the_suite_runs_natively(services: dict[str, dict[str, Any]]) -> None:
    """A dump restores only into the same TimescaleDB version; the image's pg_dump must match the server."""
    image = services["timescaledb"]["image"]
    match = re.fullmatch(r"timescale/timescaledb:(\d+\.\d+\.\d+)-pg(\d+)", image)
    assert match, image
    timescaledb, postgres_major = match[1], match[2]
    assert f"postgresql-client-{postgres_major}" in DOCKERFILE.read_text(encoding="utf-8")
    # What scripts/setup.sh installed here (TimescaleDB is built from Debian's source package for the local server).
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        pytest.skip("PostgreSQL is not installed here (make setup): the native versions are unknown")
    native_major = subprocess.run([pg_config, "--version"], capture_output=True, text=True, check=True).stdout
    assert re.search(rf"PostgreSQL {postgres_major}\.", native_major), native_major
    sharedir = subprocess.run([pg_config, "--sharedir"], capture_output=True, text=True, check=True).stdout.strip()
    control = (Path(sharedir) / "extension" / "timescaledb.control").read_text(encoding="utf-8")
    assert f"default_version = '{timescaledb}'" in control


# --------------------------------------------------------------------------------------------- variables and secrets


def test_every_variable_compose_reads_is_in_env_example_and_nothing_else(compose: dict[str, Any]) -> None:
    used = {name for name, _, _ in _references(compose)}
    listed = set(_env_example())
    assert used - listed == set(), f"read by docker-compose.yml but not in .env.example: {sorted(used - listed)}"
    assert listed - used == set(), f"in .env.example but never read: {sorted(listed - used)}"


def test_no_secret_has_a_default_and_every_secret_is_required(compose: dict[str, Any]) -> None:
    references = _references(compose)
    secrets = {name for name, _, _ in references if SECRET_NAME.search(name)}
    assert secrets >= {
        "IOC_DB_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
        "IOC_GRAFANA_DB_PASSWORD",
        "IOC_MQTT_ADMIN_PASSWORD",
        "IOC_MQTT_INGEST_PASSWORD",
        "IOC_MQTT_COMMANDS_PASSWORD",
        "IOC_MQTT_ALERTS_PASSWORD",
    }
    for name, operator, _ in references:
        if name in secrets:
            assert operator == ":?", f"${{{name}}} must be required everywhere (${{{name}:?…}}), found {operator!r}"
    example = _env_example()
    for name in secrets:
        assert example[name] == "", f".env.example gives {name} a value: secrets are generated, never defaulted"
    text = COMPOSE.read_text(encoding="utf-8").lower()
    assert "change-me" not in text and "changeme" not in text and "admin/admin" not in text


def test_settings_in_env_example_are_compose_s_own_defaults(compose: dict[str, Any]) -> None:
    example = _env_example()
    for name, operator, rest in _references(compose):
        if operator in {":-", "-"}:
            assert example[name] == rest, f"{name}: .env.example says {example[name]!r}, compose defaults to {rest!r}"


def test_no_service_sets_a_literal_secret(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        environment = svc.get("environment", {})
        assert isinstance(environment, dict), f"{name}: environment as a map, so it can be checked"
        for key, value in environment.items():
            if SECRET_NAME.search(key) and "FILE" not in key:
                assert REFERENCE.fullmatch(str(value)), f"{name}: {key} is not taken from the environment"


def test_compose_env_writes_a_distinct_random_secret_for_every_empty_variable_once(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    script = tmp_path / "scripts" / "compose-env.sh"
    script.write_bytes((REPO / "scripts" / "compose-env.sh").read_bytes())
    (tmp_path / ".env.example").write_bytes(ENV_EXAMPLE.read_bytes())
    subprocess.run(["sh", str(script)], check=True, capture_output=True)
    env_file = tmp_path / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    written = dict(
        line.split("=", 1) for line in env_file.read_text(encoding="utf-8").splitlines() if line and line[0] != "#"
    )
    example = _env_example()
    assert set(written) == set(example)
    secrets = [written[name] for name, value in example.items() if value == ""]
    assert len(secrets) == 7 and len(set(secrets)) == 7
    assert all(len(s) >= 32 for s in secrets)
    assert {n: v for n, v in written.items() if example[n]} == {n: v for n, v in example.items() if v}
    before = env_file.read_text(encoding="utf-8")
    again = subprocess.run(["sh", str(script)], check=True, capture_output=True, text=True)
    assert "left as it is" in again.stdout and env_file.read_text(encoding="utf-8") == before


# --------------------------------------------------------------------------------------------- broker


def test_the_broker_listens_on_mqtts_only_and_the_services_use_their_roles_accounts(
    services: dict[str, dict[str, Any]],
) -> None:
    broker = services["broker"]
    assert broker["ports"] == ["${IOC_MQTTS_PORT:-8883}:8883"]
    assert broker["environment"]["IOC_BROKER_PLAIN"] == "false"
    assert "--tls-port" in broker["command"]
    env = services["ingest"]["environment"]
    assert env["IOC_MQTT_INGEST_URL"].startswith("mqtts://ioc-ingest:")
    assert env["IOC_MQTT_COMMANDS_URL"].startswith("mqtts://ioc-commands:")
    assert env["IOC_MQTT_ALERTS_URL"].startswith("mqtts://ioc-alerts:")
    assert all("1883" not in str(svc.get("ports", "")) for svc in services.values())


def test_the_broker_keeps_its_state_on_a_named_volume(compose: dict[str, Any]) -> None:
    """Mosquitto's persistence file, password file and CA live under the image's IOC_RUNTIME_DIR."""
    runtime_dir = re.search(r"IOC_RUNTIME_DIR=(\S+)", DOCKERFILE.read_text(encoding="utf-8"))
    assert runtime_dir is not None
    mounts = dict(volume.split(":")[:2][::-1] for volume in compose["services"]["broker"]["volumes"])
    assert mounts[runtime_dir[1]] in compose["volumes"], "the broker's runtime folder is not on a named volume"
    embedded = (REPO / "embedded" / "runtime.py").read_text(encoding="utf-8")
    assert '"persistence true"' in embedded and "persistence_location" in embedded


# --------------------------------------------------------------------------------------------- grafana


def test_grafana_is_provisioned_with_exactly_what_ioc_dashboards_export_writes(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in services["grafana"]["volumes"]}
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    assert mounts["/etc/grafana/dashboards"] == "./deploy/grafana/dashboards"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}  # the defaults: compose's names
    subprocess.run(
        [sys.executable, "-m", "ioc", "dashboards", "export", str(tmp_path)], check=True, capture_output=True, env=env
    )
    exported = {p.relative_to(tmp_path): p.read_text(encoding="utf-8") for p in tmp_path.rglob("*") if p.is_file()}
    committed = {
        p.relative_to(REPO / "deploy" / "grafana"): p.read_text(encoding="utf-8")
        for p in (REPO / "deploy" / "grafana").rglob("*")
        if p.is_file()
    }
    assert sorted(map(str, exported)) == sorted(map(str, committed))
    stale = [str(path) for path, text in exported.items() if committed[path] != text]
    assert not stale, f"run `ioc dashboards export deploy/grafana`: out of date: {stale}"
    # The datasource's password comes from the environment Grafana runs in.
    datasource = yaml.safe_load(committed[Path("provisioning/datasources/ioc.yaml")])
    assert datasource["datasources"][0]["secureJsonData"]["password"] == "${IOC_GRAFANA_DB_PASSWORD}"
    assert services["grafana"]["environment"]["IOC_GRAFANA_DB_PASSWORD"].startswith("${IOC_GRAFANA_DB_PASSWORD:?")


# --------------------------------------------------------------------------------------------- the ioc image


def _dockerfile() -> str:
    return DOCKERFILE.read_text(encoding="utf-8")


def test_the_image_bases_are_slim_and_pinned_to_a_patch_version() -> None:
    bases = re.findall(r"^FROM (\S+)", _dockerfile(), flags=re.MULTILINE)
    assert bases
    for base in bases:
        assert PINNED_TAG.match(base), f"{base} is not pinned to a version"
        assert "slim" in base, f"{base} is not a slim image"


def test_the_image_runs_as_an_unprivileged_user() -> None:
    final_stage = _dockerfile().rsplit("\nFROM ", 1)[1]
    users = re.findall(r"^USER (\S+)", final_stage, flags=re.MULTILINE)
    assert users, "the final stage never leaves root"
    assert users[-1] not in {"root", "0", "0:0"}
    assert re.search(rf"useradd [^\n]*--uid (\d+)[^\n]* {re.escape(users[-1])}\b", final_stage)


def test_the_image_holds_no_secret_and_stays_slim() -> None:
    text = _dockerfile()
    for line in re.findall(r"^(?:ENV|ARG) .*(?:\n\s+.*)*", text, flags=re.MULTILINE):
        for name in re.findall(r"([A-Z_]+)=", line):
            assert not SECRET_NAME.search(name) or name.endswith("_FILE"), f"a secret baked into the image: {name}"
    for install in re.findall(r"apt-get install[^\n]*", text):
        assert "--no-install-recommends" in install, install
    assert text.count("rm -rf /var/lib/apt/lists/*") == text.count("apt-get update")
    assert "PIP_NO_CACHE_DIR=1" in text
    ignored = set(DOCKERIGNORE.read_text(encoding="utf-8").splitlines())
    # `COPY . /src` must not carry the secrets of the checkout into a layer.
    assert {".env", ".runtime", ".git", ".venv"} <= ignored
