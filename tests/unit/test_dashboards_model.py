"""The dashboards as code: valid against grafana-foundation-sdk's types, stable uids, every panel reading the
TimescaleDB datasource with SQL that uses only Grafana's macros and the dashboard's own variables, metrics and
thresholds that are the device catalog's, and the committed deploy/grafana/ files equal to a fresh export."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.settings import REPO_ROOT, Settings
from dashboards.collection import build_dashboards
from dashboards.datasource import DatasourceTarget
from dashboards.definitions import FOLDERS, DashboardDefinition
from dashboards.errors import DashboardsError
from dashboards.export import export_files, render_files
from dashboards.measures import MEASURES, RULE_LINES, Measure
from dashboards.queries import province_centers_sql
from dashboards.sql import DATASOURCE_UID, POSTGRES_TYPE, SqlQuery
from dashboards.validation import validate_dashboard
from devices.catalog import load_catalog
from devices.provinces import load_provinces

EXPECTED_UIDS = {
    "ioc-province-overview": "ioc-operations",
    "ioc-device-drilldown": "ioc-operations",
    "ioc-ingest-health": "ioc-operations",
    "ioc-agriculture-water": "ioc-agriculture",
    "ioc-energy-load": "ioc-energy",
    "ioc-transport-flow": "ioc-transport",
    "ioc-health-cold-chain": "ioc-health",
}
EXPECTED_FOLDERS = ["ioc-operations", "ioc-agriculture", "ioc-energy", "ioc-transport", "ioc-health"]
# Grafana's PostgreSQL macros (its macros.go) and global variables; nothing else may follow a `$__`.
GRAFANA_MACROS = {
    "__time",
    "__timeEpoch",
    "__timeFilter",
    "__timeFrom",
    "__timeTo",
    "__timeGroup",
    "__timeGroupAlias",
    "__unixEpochFilter",
    "__unixEpochNanoFilter",
    "__unixEpochNanoFrom",
    "__unixEpochNanoTo",
    "__unixEpochGroup",
    "__unixEpochGroupAlias",
}
GRAFANA_GLOBALS = {"__interval", "__interval_ms", "__unixEpochFrom", "__unixEpochTo", "__from", "__to"}
PANEL_FORMATS = {"timeseries": "time_series", "stat": "table", "table": "table", "geomap": "table"}
# Grafana units for the catalog's UCUM units.
GRAFANA_UNITS = {
    "m": "lengthm",
    "g/L": "suffix: g/L",
    "%": "percent",
    "Cel": "celsius",
    "kW": "kwatt",
    "V": "volt",
    "{vehicle}": "short",
    "{passenger}": "short",
    "km/h": "velocitykmh",
    "deg": "none",
    "1": "short",
}


def _centers() -> dict[str, tuple[float, float]]:
    return {p.code: p.center for p in load_provinces().values() if p.center is not None}


@pytest.fixture(scope="module")
def dashboards() -> tuple[DashboardDefinition, ...]:
    return build_dashboards(province_centers=_centers())


def _targets(document: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(panel, target) for panel in document["panels"] for target in panel["targets"]]


def test_every_dashboard_validates_against_the_sdk_types_and_its_targets_unmarshal_as_sql(
    dashboards: tuple[DashboardDefinition, ...],
) -> None:
    for dashboard in dashboards:
        model = validate_dashboard(dashboard.document)
        assert model.uid == dashboard.uid
        targets = [t for p in model.panels or [] for t in getattr(p, "targets", None) or []]
        assert targets and all(isinstance(t, SqlQuery) for t in targets), dashboard.uid


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d["panels"][0].__setitem__("colour", "red"), "panels[0].colour is not a field"),
        (lambda d: d.__setitem__("graphTooltip", 7), "graph_tooltip = 7 is not a DashboardCursorSync"),
        (lambda d: d["panels"][0]["options"].__setitem__("graphMode", "sparkle"), "is not a BigValueGraphMode"),
        (lambda d: d["panels"][0]["gridPos"].__setitem__("w", "wide"), "grid_pos.w = 'wide' is not a int"),
        (lambda d: d["templating"]["list"][0].__setitem__("refresh", 9), "refresh = 9 is not a VariableRefresh"),
        (lambda d: d["panels"][0]["targets"][0].__setitem__("format", "logs"), "format 'logs' is not one of"),
        (
            lambda d: d["panels"][0]["targets"][0]["datasource"].__setitem__("uid", "other"),
            "is not ioc-timescaledb",
        ),
    ],
)
def test_the_validator_refuses_unknown_keys_and_values_of_the_wrong_type(
    dashboards: tuple[DashboardDefinition, ...], change: Any, problem: str
) -> None:
    document = copy.deepcopy(dict(dashboards[0].document))
    change(document)
    with pytest.raises(DashboardsError, match=re.escape(problem)):
        validate_dashboard(document)


def test_uids_are_fixed_and_each_dashboard_is_in_its_folder(dashboards: tuple[DashboardDefinition, ...]) -> None:
    assert {d.uid: d.folder.uid for d in dashboards} == EXPECTED_UIDS
    assert [f.uid for f in FOLDERS] == EXPECTED_FOLDERS
    assert all(d.document["uid"] == d.uid for d in dashboards)
    # Built twice, byte for byte the same: provisioning compares, so nothing may vary between builds.
    again = build_dashboards(province_centers=_centers())
    assert [json.dumps(d.document) for d in again] == [json.dumps(d.document) for d in dashboards]


def test_every_panel_reads_the_timescaledb_datasource_with_sql_in_the_format_its_type_draws(
    dashboards: tuple[DashboardDefinition, ...],
) -> None:
    for dashboard in dashboards:
        panels = dashboard.document["panels"]
        assert [p["id"] for p in panels] == list(range(1, len(panels) + 1))
        for panel in panels:
            assert panel["datasource"] == {"type": POSTGRES_TYPE, "uid": DATASOURCE_UID}, panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"] == {"type": POSTGRES_TYPE, "uid": DATASOURCE_UID}
                assert target["rawQuery"] is True and target["editorMode"] == "code"
                assert target["rawSql"].lstrip().upper().startswith("SELECT"), target["rawSql"]
                assert target["format"] == PANEL_FORMATS[panel["type"]], panel["title"]
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert len(set(ref_ids)) == len(ref_ids)
        for variable in dashboard.document.get("templating", {}).get("list", []):
            assert variable["datasource"]["uid"] == DATASOURCE_UID and variable["query"].startswith("SELECT")


def test_queries_use_only_grafanas_macros_and_the_dashboards_own_variables(
    dashboards: tuple[DashboardDefinition, ...],
) -> None:
    for dashboard in dashboards:
        defined: list[str] = []
        queries = [(v["name"], v["query"]) for v in dashboard.document.get("templating", {}).get("list", [])]
        queries += [(f"panel {p['id']}", t["rawSql"]) for p, t in _targets(dict(dashboard.document))]
        for name, query in queries:
            for macro in re.findall(r"\$(__\w+)\(", query):
                assert macro in GRAFANA_MACROS | GRAFANA_GLOBALS, f"{dashboard.uid} {name}: ${macro}"
            for used in re.findall(r"\$(\w+)(?![\w(])", query):
                if used.startswith("__"):
                    assert used in GRAFANA_GLOBALS, f"{dashboard.uid} {name}: ${used}"
                else:
                    assert used in defined, f"{dashboard.uid} {name}: ${used} is not defined before it"
            if not name.startswith("panel"):
                defined.append(name)
        # Multi-value variables are lists: they are used with IN, single ones inside quotes.
        for variable in dashboard.document.get("templating", {}).get("list", []):
            for _, query in queries:
                if variable["multi"]:
                    assert f"= '${variable['name']}'" not in query
                else:
                    assert f"IN (${variable['name']})" not in query


def test_the_drilldown_chains_province_then_device_then_metric(dashboards: tuple[DashboardDefinition, ...]) -> None:
    (drilldown,) = [d for d in dashboards if d.uid == "ioc-device-drilldown"]
    variables = drilldown.document["templating"]["list"]
    assert [(v["name"], v["multi"]) for v in variables] == [("province", False), ("device", False), ("metric", True)]
    assert "'$province'" in variables[1]["query"] and "'$device'" in variables[2]["query"]


def test_device_ids_in_tables_open_the_drilldown_with_its_province_and_device(
    dashboards: tuple[DashboardDefinition, ...],
) -> None:
    (drilldown,) = [d for d in dashboards if d.uid == "ioc-device-drilldown"]
    names = [v["name"] for v in drilldown.document["templating"]["list"]]
    linked = 0
    for dashboard in dashboards:
        for panel in dashboard.document["panels"]:
            for override in panel.get("fieldConfig", {}).get("overrides", []):
                for prop in override["properties"]:
                    if prop["id"] != "links":
                        continue
                    (link,) = prop["value"]
                    assert link["url"].startswith(f"/d/{drilldown.uid}?")
                    assert f"var-{names[0]}=${{__data.fields.province_code}}" in link["url"]
                    assert f"var-{names[1]}=${{__value.raw}}" in link["url"]
                    assert "province_code" in panel["targets"][0]["rawSql"]
                    linked += 1
    assert linked == 5  # the overview's open alarms, the four sector tables


def test_metrics_the_dashboards_draw_are_the_catalogs_with_the_same_units() -> None:
    catalog = load_catalog()
    for measure in MEASURES:
        for code in measure.type_codes:
            device_type = catalog.get(code)
            assert device_type is not None, code
            units = {m.name: m.unit for m in device_type.metrics}
            assert units.get(measure.metric) == measure.catalog_unit, (code, measure.metric)
        assert GRAFANA_UNITS[measure.catalog_unit] == measure.unit, measure.metric


def test_threshold_lines_are_the_values_of_the_catalogs_alarm_rules() -> None:
    catalog = load_catalog()
    for line in RULE_LINES:
        for code in line.measure.type_codes:
            device_type = catalog.get(code)
            assert device_type is not None
            rules = {(r.kind, r.metric, r.value) for r in device_type.rules}
            if (line.kind, line.measure.metric, line.step.value) in rules:
                break
        else:
            raise AssertionError(f"no {line.kind} rule at {line.step.value} on {line.measure.metric}")


def test_sql_names_are_checked_so_no_quote_reaches_a_query() -> None:
    with pytest.raises(ValueError, match="not a metric"):
        Measure("x'; DROP TABLE readings; --", ("soil_probe",), "none", "1")
    with pytest.raises(ValueError, match="not a province code"):
        province_centers_sql({"ha-noi'": (21.0, 105.8)})


def test_the_overview_map_knows_every_provinces_seat(dashboards: tuple[DashboardDefinition, ...]) -> None:
    (overview,) = [d for d in dashboards if d.uid == "ioc-province-overview"]
    (geomap,) = [p for p in overview.document["panels"] if p["type"] == "geomap"]
    fixed = geomap["targets"][0]["rawSql"]
    provinces = load_provinces()
    assert len(provinces) == 34
    for province in provinces.values():
        assert province.center is not None
        lat, lon = province.center
        assert f"('{province.code}', {lat!r}, {lon!r})" in fixed
    layers = geomap["options"]["layers"]
    assert [(lay["filterData"]["options"], lay["location"]["mode"]) for lay in layers] == [
        ("A", "coords"),
        ("B", "coords"),
    ]
    assert all(
        (lay["location"]["latitude"], lay["location"]["longitude"]) == ("latitude", "longitude") for lay in layers
    )


def _compose_target() -> DatasourceTarget:
    defaults = Settings.model_fields
    return DatasourceTarget(
        host=defaults["grafana_db_host"].default,
        database=defaults["grafana_db_name"].default,
        user=defaults["grafana_db_user"].default,
        sslmode=defaults["grafana_db_sslmode"].default,
    )


def test_export_writes_the_provisioning_files_grafana_reads(
    dashboards: tuple[DashboardDefinition, ...], tmp_path: Path
) -> None:
    stale = tmp_path / "dashboards" / "ioc-energy" / "ioc-renamed.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    result = export_files(tmp_path, dashboards=dashboards, folders=FOLDERS, datasource=_compose_target())
    assert result.removed == (stale,) and not stale.exists()
    datasources = yaml.safe_load((tmp_path / "provisioning/datasources/ioc.yaml").read_text())
    (datasource,) = datasources["datasources"]
    assert datasources["apiVersion"] == 1
    assert {k: datasource[k] for k in ("uid", "type", "url", "user", "editable")} == {
        "uid": DATASOURCE_UID,
        "type": POSTGRES_TYPE,
        "url": "timescaledb:5432",
        "user": "grafana",
        "editable": False,
    }
    assert datasource["jsonData"]["timescaledb"] is True and datasource["jsonData"]["database"] == "ioc"
    assert datasource["secureJsonData"] == {"password": "${IOC_GRAFANA_DB_PASSWORD}"}
    providers = yaml.safe_load((tmp_path / "provisioning/dashboards/ioc.yaml").read_text())["providers"]
    assert [(p["folderUid"], p["folder"], p["options"]["path"]) for p in providers] == [
        (f.uid, f.title, f"/etc/grafana/dashboards/{f.uid}") for f in FOLDERS
    ]
    for dashboard in dashboards:
        path = tmp_path / "dashboards" / dashboard.folder.uid / f"{dashboard.uid}.json"
        assert json.loads(path.read_text(encoding="utf-8")) == dashboard.document


def test_the_committed_deploy_files_are_a_fresh_export(dashboards: tuple[DashboardDefinition, ...]) -> None:
    """docker-compose.yml mounts deploy/grafana/: run `ioc dashboards export deploy/grafana` after a change."""
    files = render_files(dashboards=dashboards, folders=FOLDERS, datasource=_compose_target())
    root = REPO_ROOT / "deploy" / "grafana"
    for relative, text in files.items():
        assert (root / relative).read_text(encoding="utf-8") == text, f"deploy/grafana/{relative} is out of date"
    committed = {p.relative_to(root) for p in (root / "dashboards").rglob("*.json")}
    assert committed == {p for p in files if p.suffix == ".json"}


def test_compose_mounts_the_exported_dashboards_where_the_providers_look() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    volumes = compose["services"]["grafana"]["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in volumes
    assert "./deploy/grafana/dashboards:/etc/grafana/dashboards:ro" in volumes
