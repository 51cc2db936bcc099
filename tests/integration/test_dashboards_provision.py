"""`ioc dashboards provision` against a small Grafana of our own: an HTTP server on 127.0.0.1 implementing only the
endpoints grafana-client calls for it (datasource by uid, folders, dashboards by uid, search), with Grafana's
status codes and response shapes. Every request is recorded; the second run in a row must make no write."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from core.settings import REPO_ROOT
from dashboards.collection import build_dashboards
from dashboards.definitions import FOLDERS
from devices.provinces import load_provinces

TOKEN = "glsa_test_token"
DB_PASSWORD = "reader-secret"
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


@dataclass
class GrafanaState:
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    next_id: int = 1

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id


class _Handler(BaseHTTPRequestHandler):
    state: GrafanaState
    lock: threading.Lock

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        with self.lock:
            self.state.requests.append(Request(self.command, url.path, parse_qs(url.query), body))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._reply(401, {"message": "Unauthorized"})
                return
            status, reply = route(self.state, self.command, url.path.split("/")[1:], parse_qs(url.query), body)
        self._reply(status, reply)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()


def route(
    state: GrafanaState, method: str, parts: list[str], query: dict[str, list[str]], body: Any
) -> tuple[int, Any]:
    """Grafana's answers for the endpoints provisioning uses; anything else is a 404 the tests look for."""
    match method, parts:
        case "GET", ["api", "datasources", "uid", uid]:
            if uid not in state.datasources:
                return 404, {"message": "Data source not found"}
            record = {k: v for k, v in state.datasources[uid].items() if k != "secureJsonData"}
            record["secureJsonFields"] = dict.fromkeys(state.datasources[uid].get("secureJsonData", {}), True)
            return 200, record
        case "POST", ["api", "datasources"]:
            if body["uid"] in state.datasources:
                return 409, {"message": "data source with the same uid already exists"}
            state.datasources[body["uid"]] = {**body, "id": state.new_id(), "orgId": 1, "readOnly": False, "version": 1}
            return 200, {
                "id": state.datasources[body["uid"]]["id"],
                "message": "Datasource added",
                "name": body["name"],
            }
        case "PUT", ["api", "datasources", "uid", uid]:
            if uid not in state.datasources:
                return 404, {"message": "Data source not found"}
            if state.datasources[uid]["readOnly"]:
                return 403, {"message": "Cannot update read-only data source"}
            old = state.datasources[uid]
            state.datasources[uid] = {
                **body,
                "id": old["id"],
                "orgId": 1,
                "readOnly": False,
                "version": old["version"] + 1,
            }
            return 200, {"message": "Datasource updated"}
        case "GET", ["api", "folders", uid]:
            if uid not in state.folders:
                return 404, {"message": "folder not found", "status": "not-found"}
            return 200, state.folders[uid]
        case "POST", ["api", "folders"]:
            if body["uid"] in state.folders:
                return 409, {"message": "a folder with the same uid already exists"}
            state.folders[body["uid"]] = {
                "id": state.new_id(),
                "uid": body["uid"],
                "title": body["title"],
                "version": 1,
            }
            return 200, state.folders[body["uid"]]
        case "PUT", ["api", "folders", uid]:
            if uid not in state.folders:
                return 404, {"message": "folder not found"}
            folder = state.folders[uid]
            if not body.get("overwrite") and body.get("version") != folder["version"]:
                return 412, {"message": "the folder has been changed by someone else"}
            folder.update(title=body["title"], version=folder["version"] + 1)
            return 200, folder
        case "GET", ["api", "dashboards", "uid", uid]:
            if uid not in state.dashboards:
                return 404, {"message": "Dashboard not found"}
            return 200, copy.deepcopy(state.dashboards[uid])
        case "POST", ["api", "dashboards", "db"]:
            dashboard = copy.deepcopy(body["dashboard"])
            uid, folder = dashboard["uid"], body.get("folderUid")
            if folder not in state.folders:
                return 400, {"message": "folder not found"}
            previous = state.dashboards.get(uid)
            if previous is not None and not body.get("overwrite"):
                return 412, {"message": "A dashboard with the same uid already exists", "status": "name-exists"}
            version = previous["dashboard"]["version"] + 1 if previous else 1
            dashboard.update(id=previous["dashboard"]["id"] if previous else state.new_id(), version=version)
            meta = {"folderUid": folder, "provisioned": False, "slug": uid, "url": f"/d/{uid}/{uid}"}
            state.dashboards[uid] = {"dashboard": dashboard, "meta": meta}
            return 200, {"id": dashboard["id"], "uid": uid, "url": meta["url"], "status": "success", "version": version}
        case "GET", ["api", "search"]:
            tags = set(query.get("tag", []))
            return 200, [
                {
                    "uid": uid,
                    "title": d["dashboard"]["title"],
                    "type": "dash-db",
                    "tags": d["dashboard"].get("tags", []),
                }
                for uid, d in sorted(state.dashboards.items())
                if tags <= set(d["dashboard"].get("tags", []))
            ]
    return 404, {"message": f"not implemented by the test server: {method} /{'/'.join(parts)}"}


@dataclass
class FakeGrafana:
    url: str
    state: GrafanaState

    def writes(self) -> list[Request]:
        return [r for r in self.state.requests if r.method in WRITES]

    def clear(self) -> None:
        self.state.requests.clear()


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    state = GrafanaState()
    handler = type("Handler", (_Handler,), {"state": state, "lock": threading.Lock()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="fake-grafana", daemon=True)
    thread.start()
    try:
        yield FakeGrafana(url=f"http://127.0.0.1:{server.server_address[1]}", state=state)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def provision(
    grafana: FakeGrafana, *args: str, token: str | None = TOKEN, db_password: str | None = DB_PASSWORD
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env.update(IOC_GRAFANA_URL=grafana.url, IOC_GRAFANA_DB_HOST="timescaledb:5432", IOC_LOG_LEVEL="WARNING")
    if token is not None:
        env["IOC_GRAFANA_TOKEN"] = token
    if db_password is not None:
        env["IOC_GRAFANA_DB_PASSWORD"] = db_password
    return subprocess.run(
        [sys.executable, "-m", "ioc", "dashboards", "provision", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )


def _expected() -> dict[str, Any]:
    centers = {p.code: p.center for p in load_provinces().values() if p.center is not None}
    return {d.uid: d for d in build_dashboards(province_centers=centers)}


def test_provision_twice_creates_everything_once_and_the_second_run_writes_nothing(grafana: FakeGrafana) -> None:
    first = provision(grafana)
    assert first.returncode == 0, first.stderr
    expected = _expected()
    writes = [(r.method, r.path) for r in grafana.writes()]
    assert sorted(writes) == sorted(
        [("POST", "/api/datasources")]
        + [("POST", "/api/folders")] * len(FOLDERS)
        + [("POST", "/api/dashboards/db")] * len(expected)
    )
    # What Grafana now holds is what the code defines.
    (datasource,) = grafana.state.datasources.values()
    assert datasource["uid"] == "ioc-timescaledb" and datasource["type"] == "grafana-postgresql-datasource"
    assert (datasource["url"], datasource["user"]) == ("timescaledb:5432", "grafana")
    assert datasource["jsonData"]["timescaledb"] is True and datasource["jsonData"]["database"] == "ioc"
    assert datasource["secureJsonData"] == {"password": DB_PASSWORD}
    assert {uid: f["title"] for uid, f in grafana.state.folders.items()} == {f.uid: f.title for f in FOLDERS}
    assert set(grafana.state.dashboards) == set(expected)
    for uid, stored in grafana.state.dashboards.items():
        body = {k: v for k, v in stored["dashboard"].items() if k not in ("id", "version")}
        assert body == expected[uid].document
        assert stored["meta"]["folderUid"] == expected[uid].folder.uid
    assert f"{len(writes)} write(s)" in first.stdout

    grafana.clear()
    second = provision(grafana)
    assert second.returncode == 0, second.stderr
    assert grafana.writes() == []
    assert {r.method for r in grafana.state.requests} == {"GET"}
    reads = {r.path for r in grafana.state.requests}
    assert reads == {
        "/api/datasources/uid/ioc-timescaledb",
        "/api/search",
        *(f"/api/folders/{f.uid}" for f in FOLDERS),
        *(f"/api/dashboards/uid/{uid}" for uid in expected),
    }
    assert "0 write(s)" in second.stdout
    assert all(line.startswith("unchanged") for line in second.stdout.splitlines()[:-1]), second.stdout


def test_what_was_changed_in_grafana_is_put_back_and_nothing_else_is_written(grafana: FakeGrafana) -> None:
    assert provision(grafana).returncode == 0
    # Someone edits a dashboard in the UI, renames a folder and points the datasource elsewhere.
    grafana.state.dashboards["ioc-energy-load"]["dashboard"]["title"] = "edited by hand"
    grafana.state.folders["ioc-health"]["title"] = "Renamed"
    grafana.state.datasources["ioc-timescaledb"]["url"] = "elsewhere:5432"
    grafana.clear()
    run = provision(grafana)
    assert run.returncode == 0, run.stderr
    assert sorted((r.method, r.path) for r in grafana.writes()) == [
        ("POST", "/api/dashboards/db"),
        ("PUT", "/api/datasources/uid/ioc-timescaledb"),
        ("PUT", "/api/folders/ioc-health"),
    ]
    expected = _expected()
    (dashboard_write,) = [r for r in grafana.writes() if r.path == "/api/dashboards/db"]
    assert dashboard_write.body["dashboard"] == expected["ioc-energy-load"].document
    assert dashboard_write.body["folderUid"] == "ioc-energy" and dashboard_write.body["overwrite"] is True
    assert grafana.state.folders["ioc-health"]["title"] == "Y tế / Health"
    assert grafana.state.datasources["ioc-timescaledb"]["url"] == "timescaledb:5432"
    grafana.clear()
    assert provision(grafana).returncode == 0
    assert grafana.writes() == []


def test_a_file_provisioned_datasource_and_stray_dashboards_are_left_alone_and_reported(grafana: FakeGrafana) -> None:
    grafana.state.datasources["ioc-timescaledb"] = {
        "uid": "ioc-timescaledb",
        "name": "IOC TimescaleDB",
        "type": "grafana-postgresql-datasource",
        "url": "db.example:5432",
        "readOnly": True,
        "id": 1,
        "version": 1,
        "jsonData": {},
    }
    grafana.state.folders["ioc-operations"] = {"id": 2, "uid": "ioc-operations", "title": "old", "version": 1}
    grafana.state.dashboards["ioc-retired"] = {
        "dashboard": {"uid": "ioc-retired", "title": "Retired", "tags": ["ioc"], "id": 3, "version": 1},
        "meta": {"folderUid": "ioc-operations"},
    }
    run = provision(grafana)
    assert run.returncode == 0, run.stderr
    paths = [(r.method, r.path) for r in grafana.writes()]
    assert ("PUT", "/api/datasources/uid/ioc-timescaledb") not in paths
    assert grafana.state.datasources["ioc-timescaledb"]["url"] == "db.example:5432"
    assert "skipped   datasource ioc-timescaledb  (provisioned from files" in run.stdout
    assert "stray     dashboard  ioc-retired" in run.stdout
    assert "ioc-retired" in grafana.state.dashboards
    assert not [r for r in grafana.state.requests if r.method == "DELETE"]


def test_dry_run_reads_and_tells_but_writes_nothing(grafana: FakeGrafana) -> None:
    run = provision(grafana, "--dry-run")
    assert run.returncode == 0, run.stderr
    assert grafana.writes() == []
    expected = _expected()
    assert run.stdout.count("create    dashboard") == len(expected)
    assert f"dry run: {1 + len(FOLDERS) + len(expected)} write(s) not made" in run.stdout


def test_without_a_database_password_the_datasource_is_not_created_but_dashboards_are(grafana: FakeGrafana) -> None:
    run = provision(grafana, db_password=None)
    assert run.returncode == 0, run.stderr
    assert grafana.state.datasources == {}
    assert "skipped   datasource ioc-timescaledb  (missing, and no IOC_GRAFANA_DB_PASSWORD" in run.stdout
    assert len(grafana.state.dashboards) == len(_expected())


def test_a_refused_token_is_an_error_naming_grafana_and_nothing_is_written(grafana: FakeGrafana) -> None:
    run = provision(grafana, token="wrong")
    assert run.returncode == 2
    assert run.stderr.startswith("ioc: Grafana refused to read the datasource"), run.stderr
    assert "Unauthorized" in run.stderr
    assert grafana.writes() == []
    assert [r.path for r in grafana.state.requests] == ["/api/datasources/uid/ioc-timescaledb"]
