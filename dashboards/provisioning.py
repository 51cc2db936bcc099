"""`ioc dashboards provision`: the datasource, folders and dashboards upserted by uid through Grafana's HTTP API
(grafana-client). Everything is read first and compared with the code; only what differs is written, so a
second run in a row makes no write at all.

Left alone, and said so: a datasource provisioned from files (read-only in Grafana) and dashboards provisioned
from files; dashboards tagged `ioc` that the code no longer defines (listed, never deleted). The datasource is
written only when its password is known (`IOC_GRAFANA_DB_PASSWORD`): Grafana never returns a password, so an
existing datasource whose other fields match is not rewritten just to set it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from grafana_client.client import GrafanaException

from dashboards.datasource import DatasourceTarget
from dashboards.definitions import DashboardDefinition, Folder
from dashboards.errors import DashboardsError
from dashboards.panels import IOC_TAG
from dashboards.sql import DATASOURCE_UID
from dashboards.validation import validate_dashboard

_LOGGER = logging.getLogger(__name__)

SAVE_MESSAGE: Final = "ioc dashboards provision"
# Set by Grafana on what it stores; not part of what the code defines.
_SERVER_DASHBOARD_KEYS: Final = frozenset({"id", "version"})
HTTP_NOT_FOUND: Final = 404

Action = Literal["create", "update", "unchanged", "skipped"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    kind: Literal["datasource", "folder", "dashboard"]
    uid: str
    action: Action
    why: str = ""
    # What to write (None when the action writes nothing).
    apply: Callable[[], object] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Plan:
    changes: tuple[Change, ...]
    strays: tuple[str, ...]

    @property
    def writes(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.apply is not None)


def plan_provisioning(
    api: Any,
    *,
    dashboards: Sequence[DashboardDefinition],
    folders: Sequence[Folder],
    datasource: DatasourceTarget,
    datasource_password: str | None,
) -> Plan:
    """Read what Grafana has and decide, per object, what to write; nothing is written here.
    `api` is a `grafana_client.GrafanaApi`."""
    for dashboard in dashboards:
        validate_dashboard(dashboard.document)
    changes = [_plan_datasource(api, datasource, datasource_password)]
    changes.extend(_plan_folder(api, folder) for folder in folders)
    changes.extend(_plan_dashboard(api, dashboard) for dashboard in dashboards)
    ours = {d.uid for d in dashboards}
    found = _call(lambda: api.search.search_dashboards(tag=IOC_TAG, type_="dash-db"), what="search dashboards")
    strays = tuple(sorted(str(hit["uid"]) for hit in found or [] if hit.get("uid") not in ours))
    return Plan(changes=tuple(changes), strays=strays)


def apply_plan(plan: Plan) -> None:
    """Write what the plan says, datasource and folders before the dashboards that need them."""
    for change in plan.writes:
        assert change.apply is not None
        _LOGGER.info("%s %s %s%s", change.action, change.kind, change.uid, f": {change.why}" if change.why else "")
        _call(change.apply, what=f"{change.action} {change.kind} {change.uid}")


def _plan_datasource(api: Any, target: DatasourceTarget, password: str | None) -> Change:
    wanted = target.api_fields()
    existing = _get(lambda: api.datasource.get_datasource_by_uid(DATASOURCE_UID), what="read the datasource")
    if existing is None:
        if password is None:
            return Change(
                kind="datasource",
                uid=DATASOURCE_UID,
                action="skipped",
                why="missing, and no IOC_GRAFANA_DB_PASSWORD to create it",
            )
        body = {**wanted, "secureJsonData": {"password": password}}
        return Change(
            kind="datasource", uid=DATASOURCE_UID, action="create", apply=lambda: api.datasource.create_datasource(body)
        )
    differences = _differences(wanted, existing)
    has_password = bool((existing.get("secureJsonFields") or {}).get("password"))
    if not differences and (has_password or password is None):
        return Change(kind="datasource", uid=DATASOURCE_UID, action="unchanged")
    why = ", ".join(differences) or "no password set"
    if existing.get("readOnly"):
        return Change(
            kind="datasource", uid=DATASOURCE_UID, action="skipped", why=f"provisioned from files (differs: {why})"
        )
    if password is None:
        return Change(
            kind="datasource",
            uid=DATASOURCE_UID,
            action="skipped",
            why=f"differs ({why}) but IOC_GRAFANA_DB_PASSWORD is unset",
        )
    body = {**wanted, "secureJsonData": {"password": password}}
    return Change(
        kind="datasource",
        uid=DATASOURCE_UID,
        action="update",
        why=why,
        apply=lambda: api.datasource.update_datasource_by_uid(DATASOURCE_UID, body),
    )


def _plan_folder(api: Any, folder: Folder) -> Change:
    existing = _get(lambda: api.folder.get_folder(folder.uid), what=f"read folder {folder.uid}")
    if existing is None:
        return Change(
            kind="folder",
            uid=folder.uid,
            action="create",
            apply=lambda: api.folder.create_folder(folder.title, uid=folder.uid),
        )
    if existing.get("title") == folder.title:
        return Change(kind="folder", uid=folder.uid, action="unchanged")
    return Change(
        kind="folder",
        uid=folder.uid,
        action="update",
        why=f"title {existing.get('title')!r}",
        apply=lambda: api.folder.update_folder(
            folder.uid, title=folder.title, version=existing.get("version"), overwrite=True
        ),
    )


def _plan_dashboard(api: Any, dashboard: DashboardDefinition) -> Change:
    existing = _get(lambda: api.dashboard.get_dashboard(dashboard.uid), what=f"read dashboard {dashboard.uid}")
    body = {
        "dashboard": dict(dashboard.document),
        "folderUid": dashboard.folder.uid,
        "overwrite": True,
        "message": SAVE_MESSAGE,
    }
    if existing is None:
        return Change(
            kind="dashboard", uid=dashboard.uid, action="create", apply=lambda: api.dashboard.update_dashboard(body)
        )
    stored = {k: v for k, v in (existing.get("dashboard") or {}).items() if k not in _SERVER_DASHBOARD_KEYS}
    meta = existing.get("meta") or {}
    reasons = []
    if stored != dashboard.document:
        reasons.append("content")
    if meta.get("folderUid") != dashboard.folder.uid:
        reasons.append(f"folder {meta.get('folderUid')!r}")
    if not reasons:
        return Change(kind="dashboard", uid=dashboard.uid, action="unchanged")
    why = ", ".join(reasons)
    if meta.get("provisioned"):
        return Change(
            kind="dashboard", uid=dashboard.uid, action="skipped", why=f"provisioned from files (differs: {why})"
        )
    return Change(
        kind="dashboard",
        uid=dashboard.uid,
        action="update",
        why=why,
        apply=lambda: api.dashboard.update_dashboard(body),
    )


def _differences(wanted: Mapping[str, object], existing: Mapping[str, Any]) -> list[str]:
    """Fields of `wanted` that `existing` lacks or holds otherwise (maps compared key by key)."""
    found: list[str] = []
    for key, value in wanted.items():
        have = existing.get(key)
        if isinstance(value, Mapping) and isinstance(have, Mapping):
            found.extend(f"{key}.{sub}" for sub in _differences(value, have))
        elif have != value:
            found.append(key)
    return found


def _get(read: Callable[[], Any], *, what: str) -> Any:
    """`read()`, or None when Grafana answers 404."""
    try:
        return read()
    except GrafanaException as exc:
        if getattr(exc, "status_code", None) == HTTP_NOT_FOUND:
            return None
        raise DashboardsError(f"Grafana refused to {what}: {exc}") from exc
    except OSError as exc:  # niquests' connection errors are OSErrors
        raise DashboardsError(f"cannot reach Grafana to {what}: {exc}") from exc


def _call(request: Callable[[], Any], *, what: str) -> Any:
    try:
        return request()
    except GrafanaException as exc:
        raise DashboardsError(f"Grafana refused to {what}: {exc}") from exc
    except OSError as exc:
        raise DashboardsError(f"cannot reach Grafana to {what}: {exc}") from exc
