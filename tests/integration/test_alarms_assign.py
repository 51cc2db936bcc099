"""Assigning alarms through the real API: an operator gives an open alarm to a person who can see it (often
themselves), takes it back, and lists "my" alarms; someone who could not see it, a viewer, a disabled user or a
cleared alarm is refused with a message; every assignment is audited and is an event for the live console."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import psycopg

from analytics.alarms import AlarmSignal, raise_alarm
from api.access.users import create_user
from devices.provisioning import ProvisionedDevice
from store.scope import EVERYTHING, Scope
from tests.integration.conftest import ApiServer, ScratchDatabase
from tests.integration.device_fixtures import provision_fixture  # noqa: F401

PASSWORD = "trực-ban-2026-đêm"
T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def _login(client: httpx.Client, username: str) -> dict[str, str]:
    response = client.post("/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _alarm(database: ScratchDatabase, device_id: str, province: str) -> int:
    signal = AlarmSignal(
        device_id=device_id,
        metric="temp_c",
        source="rule",
        kind="threshold",
        cause="temp_c_high",
        province=province,
        sector="health",
        severity="major",
        message="fridge too warm",
        first_ts=T0,
        last_ts=T0,
        occurrences=1,
        value=11.5,
        score=None,
        received_at=T0,
    )
    with psycopg.connect(database.url) as conn:
        alarm, created = raise_alarm(conn, signal, now=T0 + timedelta(seconds=1))
        conn.commit()
    assert created
    return alarm.id


def test_operators_assign_alarms_to_people_who_can_see_them(
    database: ScratchDatabase, api: Callable[[], ApiServer], provision: Callable[..., ProvisionedDevice]
) -> None:
    provision("fridge-ct-9", "vaccine_fridge", "can-tho")
    provision("fridge-hn-9", "vaccine_fridge", "ha-noi")
    home, away = _alarm(database, "fridge-ct-9", "can-tho"), _alarm(database, "fridge-hn-9", "ha-noi")
    with psycopg.connect(database.url) as conn:
        for username, role, scope in (
            ("lan", "operator", Scope.of(provinces=["can-tho"])),
            ("minh", "operator", Scope.of(provinces=["can-tho"], sectors=["health"])),
            ("hoa", "operator", Scope.of(provinces=["ha-noi"])),
            ("xem", "viewer", EVERYTHING),
            ("nghi", "operator", EVERYTHING),
        ):
            create_user(conn, username=username, password=PASSWORD, role=role, scope=scope, actor="test")
        conn.execute("UPDATE users SET disabled_at = now() WHERE username = 'nghi'")
        conn.commit()

    with api() as client:
        lan = _login(client, "lan")
        taken = client.post(f"/alarms/{home}/assign", json={"assignee": "lan", "note": "tôi xử lý"}, headers=lan)
        assert taken.status_code == 200, taken.text
        assert taken.json()["assigned_to"] == "lan" and taken.json()["assigned_at"] is not None
        given = client.post(f"/alarms/{home}/assign", json={"assignee": "Minh"}, headers=lan)
        assert given.json()["assigned_to"] == "minh"
        minh = _login(client, "minh")
        mine = client.get("/alarms", params={"assigned_to": "me"}, headers=minh).json()
        assert [a["id"] for a in mine] == [home]
        assert client.get("/alarms", params={"assigned_to": "me"}, headers=lan).json() == []

        def refused(body: dict[str, object], alarm_id: int = home) -> tuple[int, str]:
            answer = client.post(f"/alarms/{alarm_id}/assign", json=body, headers=lan)
            return answer.status_code, str(answer.json()["detail"])

        assert refused({"assignee": "hoa"}) == (
            422,
            "user 'hoa' cannot see alarms of can-tho/health: their scope does not include it",
        )
        assert refused({"assignee": "xem"}) == (422, "user 'xem' is a viewer; an alarm goes to an operator or an admin")
        assert refused({"assignee": "nghi"})[0] == 422
        assert refused({"assignee": "nobody"}) == (422, f"no enabled user 'nobody' to assign alarm {home} to")
        assert refused({"assignee": "lan"}, alarm_id=away) == (404, f"no alarm {away}")
        assert refused({})[0] == 422  # who takes it must be said, even if it is nobody (null)
        assert (
            client.post(f"/alarms/{home}/assign", json={"assignee": "lan"}, headers=_login(client, "xem")).status_code
            == 403
        )

        back = client.post(f"/alarms/{home}/assign", json={"assignee": None}, headers=lan)
        assert (back.json()["assigned_to"], back.json()["assigned_at"]) == (None, None)
        assert client.post(f"/alarms/{home}/clear", json={}, headers=lan).status_code == 200
        assert refused({"assignee": "lan"}) == (409, f"alarm {home} is cleared; only an open alarm can be assigned")

    with psycopg.connect(database.url) as conn:
        audited = conn.execute(
            "SELECT actor, details->>'from', details->>'to', details->>'note' FROM audit_log "
            "WHERE action = 'alarm.assign' ORDER BY id"
        ).fetchall()
        events = conn.execute(
            "SELECT status, assigned_to FROM alarm_events WHERE alarm_id = %s ORDER BY event_id", (home,)
        ).fetchall()
    assert audited == [
        ("user:lan", None, "lan", "tôi xử lý"),
        ("user:lan", "lan", "minh", None),
        ("user:lan", "minh", None, None),
    ]
    assert events == [
        ("active", None),
        ("active", "lan"),
        ("active", "minh"),
        ("active", None),
        ("cleared", None),
    ]
