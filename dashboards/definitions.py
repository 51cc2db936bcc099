"""What provisioning and export handle: folders (one per sector, one for operations) and built dashboards as the
JSON documents Grafana stores, each with its fixed uid and folder; plus the skeleton every dashboard starts from."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from grafana_foundation_sdk.builders import dashboard as dashboard_b
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dashboard_m

from dashboards.panels import DEFAULT_FROM, IOC_TAG, REFRESH, TIMEZONE
from dashboards.sql import datasource_ref

# Every uid we create starts so; Grafana allows up to 40 characters of [A-Za-z0-9_-].
UID_PREFIX: Final = "ioc-"
UID_MAX_CHARS: Final = 40


@dataclass(frozen=True, slots=True)
class Folder:
    uid: str
    title: str


OPERATIONS: Final = Folder("ioc-operations", "IOC · Vận hành / Operations")
AGRICULTURE: Final = Folder("ioc-agriculture", "Nông nghiệp / Agriculture")
ENERGY: Final = Folder("ioc-energy", "Năng lượng / Energy")
TRANSPORT: Final = Folder("ioc-transport", "Giao thông / Transport")
HEALTH: Final = Folder("ioc-health", "Y tế / Health")
FOLDERS: Final = (OPERATIONS, AGRICULTURE, ENERGY, TRANSPORT, HEALTH)


@dataclass(frozen=True, slots=True)
class DashboardDefinition:
    """A dashboard as Grafana stores it (`document`, the model's JSON) and the folder it belongs in."""

    uid: str
    title: str
    folder: Folder
    document: Mapping[str, Any]


def new_dashboard(*, uid: str, title: str, description: str, tags: Sequence[str]) -> dashboard_b.Dashboard:
    """The house skeleton: Vietnam's timezone, the last 6 h refreshed every minute, read-only (the code is the
    source; a change made in the UI would be overwritten by the next provisioning), and a menu of the other
    IOC dashboards."""
    return (
        dashboard_b.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([IOC_TAG, *tags])
        .timezone(TIMEZONE)
        .time(DEFAULT_FROM, "now")
        .refresh(REFRESH)
        .readonly()
        .tooltip(dashboard_m.DashboardCursorSync.CROSSHAIR)
        .link(
            dashboard_b.DashboardLink("Bảng IOC / IOC dashboards")
            .type(dashboard_m.DashboardLinkType.DASHBOARDS)
            .tags([IOC_TAG])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )


def query_variable(*, name: str, label: str, sql: str, multi: bool, description: str) -> dashboard_b.QueryVariable:
    """A variable filled by SQL (columns `__value` and `__text`, or one column). A multi-value variable starts on
    All and is interpolated as a quoted list, for `IN (${name})`; a single one as the bare value, for `'${name}'`."""
    variable = (
        dashboard_b.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(datasource_ref())
        .query(sql.strip())
        .refresh(dashboard_m.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dashboard_m.VariableSort.DISABLED)
        .multi(multi)
        .include_all(multi)
    )
    if multi:
        variable = variable.current(dashboard_m.VariableOption(selected=True, text=["All"], value=["$__all"]))
    return variable


# Provinces of the registry, Vietnamese names shown, codes substituted.
PROVINCES_SQL: Final = """
SELECT p.name AS __text, p.code AS __value
FROM provinces p
WHERE EXISTS (SELECT 1 FROM devices d WHERE d.province = p.code AND d.status = 'active')
ORDER BY p.name_ascii
"""


def province_variable(*, multi: bool) -> dashboard_b.QueryVariable:
    return query_variable(
        name="province",
        label="Tỉnh / Province",
        sql=PROVINCES_SQL,
        multi=multi,
        description="Provinces with registered devices",
    )


def encode(builder: dashboard_b.Dashboard) -> dict[str, Any]:
    """The built model as plain JSON (what Grafana stores and what the files hold)."""
    document: dict[str, Any] = json.loads(JSONEncoder().encode(builder.build()))
    return document


def define(builder: dashboard_b.Dashboard, *, folder: Folder) -> DashboardDefinition:
    """Encode a finished dashboard; its panels are numbered in order (links such as `viewPanel=3` stay put)."""
    built = builder.build()
    for number, panel in enumerate(built.panels or [], start=1):
        panel.id_val = number
    document = encode(builder)
    uid, title = document["uid"], document["title"]
    if not (uid.startswith(UID_PREFIX) and len(uid) <= UID_MAX_CHARS):
        raise ValueError(f"dashboard uid {uid!r} must start with {UID_PREFIX!r} and have at most {UID_MAX_CHARS} chars")
    return DashboardDefinition(uid=uid, title=title, folder=folder, document=document)
