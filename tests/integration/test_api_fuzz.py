"""Property-based fuzzing of the real API (uvicorn, a real database) from its own OpenAPI document, with
schemathesis: every operation gets valid and invalid requests, once without a token and once with an admin's.
No answer may be a 5xx, and every answer must be what the document says: a documented status code, a body of
the documented schema, the documented content type.

Bounded and deterministic: a fixed number of examples per operation, a fixed seed, no example database, no
deadline (the machine is shared), no shrinking (a failure is reported with the request that caused it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import psycopg
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, reject, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from analytics.alarms import AlarmSignal, raise_alarm
from api.state import ConnDep
from devices.registry import DeviceRecord
from embedded.runtime import EmbeddedMosquitto
from tests.integration.conftest import ApiServer, ScratchDatabase
from tests.integration.device_fixtures import tokens_fixture  # noqa: F401

SEED: Final = 20261122
EXAMPLES_PER_OPERATION: Final = 20
CHECKS: Final = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]
# An endless event stream answers 200 and then never ends: fuzzed only where it answers at once (no token).
ENDLESS: Final = frozenset({"GET /stream"})
# Operations anyone may call besides the probes: logging in (and the pages, which are not in the document).
OPEN_BEYOND_PROBES: Final = frozenset({"GET /readyz", "POST /auth/login", "POST /auth/token", "POST /auth/refresh"})
T0: Final = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def _seed_data(database: ScratchDatabase, register: Callable[..., DeviceRecord]) -> None:
    """A device and an alarm, so that requests naming them reach past the 404s."""
    register("soil-ct-1", "soil_probe", "can-tho")
    signal = AlarmSignal(
        device_id="soil-ct-1",
        metric="soil_moisture",
        source="rule",
        kind="threshold",
        cause="soil_moisture_low",
        province="can-tho",
        sector="agriculture",
        severity="minor",
        message="dry",
        first_ts=T0,
        last_ts=T0,
        occurrences=1,
        value=3.0,
        score=None,
        received_at=T0,
    )
    with psycopg.connect(database.url) as conn:
        raise_alarm(conn, signal, now=T0)
        conn.commit()


def _send(client: httpx.Client, case: schemathesis.Case[Any], headers: dict[str, str]) -> httpx.Response:
    """The case's request, sent with httpx. (schemathesis's own transport is `requests`, whose urllib3 is replaced
    in this environment by urllib3-future, which grafana-client's niquests brings and which it cannot drive.)"""
    request = case.as_transport_kwargs(base_url=str(client.base_url).rstrip("/"), headers=headers)
    body: dict[str, Any] = {}
    if "json" in request:
        body["json"] = request["json"]
    if isinstance(request.get("data"), bytes | str):
        body["content"] = request["data"]
    elif request.get("data") is not None:
        body["data"] = request["data"]
    if request.get("files"):
        body["files"] = request["files"]
    if request.get("cookies"):
        client.cookies = httpx.Cookies(request["cookies"])
    try:
        return client.request(
            request["method"], request["url"], params=request.get("params"), headers=request["headers"], **body
        )
    finally:
        client.cookies.clear()


@dataclass(frozen=True, slots=True)
class FuzzRun:
    failures: list[str]  # one text per failing operation: the check that failed and a curl command repeating it
    statuses: dict[str, set[int]]  # "GET /devices" -> every status code it answered
    open_operations: set[str]  # those the document marks `security: []`


def _property(
    client: httpx.Client,
    strategy: st.SearchStrategy[schemathesis.Case[Any]],
    *,
    headers: dict[str, str],
    answered: set[int],
) -> Callable[[], None]:
    """The hypothesis test of one operation: each case is sent, its status noted in `answered`, its answer checked."""

    @seed(SEED)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def call(case: schemathesis.Case[Any]) -> None:
        try:
            response = _send(client, case, headers)
        except httpx.LocalProtocolError:
            reject()  # not a request HTTP can carry (a header value ending in a space): no server sees it
        answered.add(response.status_code)
        case.validate_response(response, checks=CHECKS, headers=headers)

    return call


def _fuzz(client: httpx.Client, *, headers: dict[str, str], skip: frozenset[str] = frozenset()) -> FuzzRun:
    document = client.get("/openapi.json").raise_for_status().json()
    schema = schemathesis.openapi.from_dict(document)
    run = FuzzRun(
        failures=[],
        statuses={},
        open_operations={
            f"{method.upper()} {path}"
            for path, operations in document["paths"].items()
            for method, operation in operations.items()
            if operation.get("security") == []
        },
    )
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()  # the document itself is valid OpenAPI
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        if label in skip:
            continue
        answered = run.statuses.setdefault(label, set())
        # A third of the examples name the seeded device and alarm; the rest are made up entirely.
        known = {
            name: value
            for name, value in (("device_id", "soil-ct-1"), ("alarm_id", 1))
            if f"{{{name}}}" in operation.path
        }
        strategy = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
            operation.as_strategy(GenerationMode.POSITIVE, path_parameters=known),
        )

        try:
            _property(client, strategy, headers=headers, answered=answered)()
        except (Failure, FailureGroup) as exc:
            run.failures.append(f"{label}: {exc}")
    return run


@pytest.fixture(autouse=True)
def _unknown_tokens_not_throttled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative examples carry made-up tokens; throttled after a few, every later request would be a 429 and the
    fuzzing would reach no route. (The limit itself is tested with the access routes.)"""
    monkeypatch.setenv("IOC_TOKEN_FAILURES_PER_ADDRESS", "1000000")


def test_fuzzing_without_a_token_finds_no_5xx_and_no_answer_the_document_does_not_describe(
    database: ScratchDatabase, register: Callable[..., DeviceRecord], broker: EmbeddedMosquitto
) -> None:
    _seed_data(database, register)
    with ApiServer(database.url, mqtt_url=broker.url) as client:
        run = _fuzz(client, headers={})
    assert not run.failures, "\n\n".join(run.failures)
    assert "GET /healthz" in run.open_operations
    assert run.open_operations <= {"GET /healthz", *OPEN_BEYOND_PROBES}
    secured = {label: codes for label, codes in run.statuses.items() if label not in run.open_operations}
    assert {label for label, codes in secured.items() if 401 not in codes} == set()
    assert {label: codes for label, codes in secured.items() if any(200 <= c < 300 for c in codes)} == {}


def test_fuzzing_with_an_admin_token_finds_no_5xx_and_no_answer_the_document_does_not_describe(
    database: ScratchDatabase,
    register: Callable[..., DeviceRecord],
    broker: EmbeddedMosquitto,
    tokens: dict[str, dict[str, str]],
) -> None:
    _seed_data(database, register)
    # With a broker, so that commands are sent (without one they are refused with a 503, a 5xx).
    with ApiServer(database.url, mqtt_url=broker.url) as client:
        run = _fuzz(client, headers=tokens["admin"], skip=ENDLESS)
    assert not run.failures, "\n\n".join(run.failures)
    # The fuzzing reached the routes, past authentication and the 404s, up to the seeded device and alarm.
    reached = {label for label, codes in run.statuses.items() if any(200 <= c < 300 for c in codes)}
    assert reached >= {
        "GET /devices",
        "GET /devices/{device_id}",
        "GET /alarms",
        "GET /alarms/{alarm_id}",
        "GET /audit",
    }


# --------------------------------------------------------------------------------------------------------------
# The answers the fuzzing checks in general, pinned for the inputs that were 500s before issue 10.


def _detail(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["detail"] and isinstance(body["detail"], str), body
    return str(body["detail"])


def test_a_nul_character_in_the_path_the_query_or_the_body_is_a_422_that_says_where(
    database: ScratchDatabase,
    register: Callable[..., DeviceRecord],
    api: Callable[[], ApiServer],
    tokens: dict[str, dict[str, str]],
) -> None:
    register("soil-ct-1", "soil_probe", "can-tho")
    admin = tokens["admin"]
    nul = "contains a NUL character (U+0000), which no text field can hold"
    with api() as client:
        assert _detail(client.get("/devices/x%00", headers=admin), 422) == f"the path {nul}"
        assert _detail(client.get("/devices/x%00"), 422) == f"the path {nul}"  # before authentication
        by_query = client.get("/devices/soil-ct-1/readings", params={"metric": "\x00"}, headers=admin)
        assert _detail(by_query, 422) == f"query parameter 'metric' {nul}"
        by_json = client.patch("/devices/soil-ct-1", json={"name": "pump\x00house"}, headers=admin)
        assert _detail(by_json, 422) == f"body.name {nul}"
        surrogate = client.patch(
            "/devices/soil-ct-1",
            content=b'{"name": "\\ud800"}',
            headers={**admin, "Content-Type": "application/json"},
        )
        assert _detail(surrogate, 422) == (
            "body.name is not valid Unicode (an unpaired surrogate), which no text field can hold"
        )
        csv = client.post(
            "/devices/import",
            content="device_id,type_code,province\nx\x00,soil_probe,can-tho\n",
            headers={**admin, "Content-Type": "text/csv"},
        )
        assert _detail(csv, 422) == f"body {nul}"
        assert client.get("/devices/soil-ct-1", headers=admin).json()["name"] == ""
    assert database.scalar("SELECT count(*) FROM devices") == 1


def test_a_json_body_nested_too_deep_to_read_is_a_400(
    register: Callable[..., DeviceRecord], api: Callable[[], ApiServer], tokens: dict[str, dict[str, str]]
) -> None:
    register("soil-ct-1", "soil_probe", "can-tho")
    deep = "[" * 100_000 + "]" * 100_000
    with api() as client:
        response = client.patch(
            "/devices/soil-ct-1", content=deep, headers={**tokens["admin"], "Content-Type": "application/json"}
        )
    assert _detail(response, 400) == "There was an error parsing the body"


def test_a_time_range_reaching_past_year_1_or_9999_is_a_422_and_the_widest_valid_one_answers(
    register: Callable[..., DeviceRecord], api: Callable[[], ApiServer], tokens: dict[str, dict[str, str]]
) -> None:
    register("soil-ct-1", "soil_probe", "can-tho")
    admin = tokens["admin"]
    refused = "'from' and 'to' must lie between the years 1 and 9999 (in UTC)"
    with api() as client:
        for params in (
            {"to": "0001-01-01T00:00:00Z"},  # `from` defaults to an hour earlier: before year 1
            {"from": "0001-01-01T00:00:00+01:00", "to": "2026-11-22T08:00:00Z"},  # year 0 in UTC
            {"from": "2026-11-22T08:00:00Z", "to": "9999-12-31T23:30:00-01:00"},  # year 10000 in UTC
        ):
            for path in ("/devices/soil-ct-1/readings", "/devices/soil-ct-1/anomalies"):
                assert _detail(client.get(path, params=params, headers=admin), 422) == refused, (path, params)
        widest = {"from": "0001-01-01T00:00:00Z", "to": "9999-12-31T23:59:59Z"}
        answered = client.get("/devices/soil-ct-1/readings", params=widest, headers=admin)
        assert (answered.status_code, answered.json()) == (200, [])


def test_a_value_the_database_refuses_is_a_422_and_an_unexpected_error_a_plain_500_with_a_log_line(
    database: ScratchDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    # Two routes of this test's own, on the real app and database: the safety nets catch what routes do not.
    server = ApiServer(database.url)
    app = server.server.config.app
    assert isinstance(app, FastAPI)

    def bigint(conn: ConnDep, value: int) -> int:
        row = conn.execute("SELECT %s::bigint", (value,)).fetchone()
        assert row is not None
        return int(row[0])

    def broken(conn: ConnDep) -> None:
        conn.execute("SELECT 1")
        raise RuntimeError("secret internals at /srv/ioc")

    app.add_api_route("/test/bigint", bigint)
    app.add_api_route("/test/broken", broken)
    with caplog.at_level(logging.ERROR, logger="api.errors"), server as client:
        assert client.get("/test/bigint", params={"value": 2**63 - 1}).json() == 2**63 - 1
        too_big = _detail(client.get("/test/bigint", params={"value": 2**63}), 422)
        assert too_big == "a value is out of range or malformed: bigint out of range"
        broken_answer = client.get("/test/broken")
        assert _detail(broken_answer, 500) == "internal error"
    assert "secret" not in broken_answer.text and "Traceback" not in broken_answer.text
    assert [r.getMessage() for r in caplog.records if r.name == "api.errors"] == [
        "GET /test/broken failed: RuntimeError"
    ]


def test_the_document_declares_bearer_security_for_all_but_the_open_operations_and_what_they_answer(
    api: Callable[[], ApiServer],
) -> None:
    with api() as client:
        document = client.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert document["security"] and all(name in schemes for r in document["security"] for name in r)
    assert schemes["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["HTTPBearer"]["description"],
    }
    operations = {
        f"{method.upper()} {path}": operation
        for path, by_method in document["paths"].items()
        for method, operation in by_method.items()
    }
    open_operations = {label for label, operation in operations.items() if operation.get("security") == []}
    assert open_operations == {"GET /healthz", "GET /readyz"} | (OPEN_BEYOND_PROBES & set(operations))
    error_body = {"$ref": "#/components/schemas/ErrorBody"}
    unprocessable = {"$ref": "#/components/schemas/HTTPValidationError"}
    for label, operation in operations.items():
        responses = operation["responses"]
        assert responses["422"]["content"]["application/json"]["schema"] == unprocessable, label
        if label not in open_operations:
            assert "security" not in operation, label  # the document's own requirement applies
            for code in ("401", "429"):
                assert responses[code]["content"]["application/json"]["schema"] == error_body, (label, code)
    assert document["components"]["schemas"]["HTTPValidationError"]["anyOf"] == [
        error_body,
        {"$ref": "#/components/schemas/FieldProblems"},
    ]
    assert operations["POST /devices"]["responses"]["403"]["content"]["application/json"]["schema"] == error_body
