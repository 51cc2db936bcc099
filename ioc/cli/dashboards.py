"""`ioc dashboards provision|export`: the Grafana dashboards of dashboards/ upserted through Grafana's API, or
written as files for Grafana's file provisioning (the compose stack mounts deploy/grafana/)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dashboards = sub.add_parser("dashboards", help="Grafana dashboards as code: provision by API, or export files")
    dsub = dashboards.add_subparsers(dest="dashboards_command", required=True)

    provision = dsub.add_parser(
        "provision",
        help="upsert the datasource, folders and dashboards by uid (IOC_GRAFANA_URL, IOC_GRAFANA_TOKEN)",
    )
    provision.add_argument("--dry-run", action="store_true", help="read Grafana and print what would change")
    provision.set_defaults(func=cmd_provision)

    export = dsub.add_parser("export", help="write provisioning YAML and dashboard JSON files under DIR")
    export.add_argument("directory", type=Path, metavar="DIR", help="e.g. deploy/grafana")
    export.add_argument(
        "--grafana-path",
        default=None,
        help="where Grafana sees DIR/dashboards (default /etc/grafana/dashboards, as docker-compose.yml mounts it)",
    )
    export.set_defaults(func=cmd_export)


def _definitions() -> Any:
    from dashboards.collection import build_dashboards
    from devices.provinces import load_provinces

    centers = {p.code: p.center for p in load_provinces().values() if p.center is not None}
    return build_dashboards(province_centers=centers)


def cmd_export(args: argparse.Namespace) -> int:
    from core.settings import Settings
    from dashboards.datasource import DatasourceTarget
    from dashboards.definitions import FOLDERS
    from dashboards.export import GRAFANA_DASHBOARDS_PATH, export_files

    settings = Settings()
    result = export_files(
        args.directory,
        dashboards=_definitions(),
        folders=FOLDERS,
        datasource=DatasourceTarget.from_settings(settings),
        grafana_path=args.grafana_path or GRAFANA_DASHBOARDS_PATH,
    )
    for path in result.written:
        print(f"wrote {path}")
    for path in result.removed:
        print(f"removed {path}")
    return 0


def cmd_provision(args: argparse.Namespace) -> int:
    from grafana_client.api import GrafanaApi

    from core.settings import Settings
    from dashboards.datasource import DatasourceTarget
    from dashboards.definitions import FOLDERS
    from dashboards.provisioning import apply_plan, plan_provisioning

    settings = Settings()
    credential: str | tuple[str, str] | None = None
    if settings.grafana_token is not None:
        credential = settings.grafana_token.get_secret_value()
    elif settings.grafana_password is not None:
        credential = (settings.grafana_user, settings.grafana_password.get_secret_value())
    api = GrafanaApi.from_url(url=settings.grafana_url, credential=credential, timeout=30.0)
    password = settings.grafana_db_password.get_secret_value() if settings.grafana_db_password else None
    plan = plan_provisioning(
        api,
        dashboards=_definitions(),
        folders=FOLDERS,
        datasource=DatasourceTarget.from_settings(settings),
        datasource_password=password,
    )
    for change in plan.changes:
        print(f"{change.action:9} {change.kind:10} {change.uid}{f'  ({change.why})' if change.why else ''}")
    for uid in plan.strays:
        print(f"{'stray':9} {'dashboard':10} {uid}  (tagged {'ioc'!r} but not defined in dashboards/; left alone)")
    if args.dry_run:
        print(f"dry run: {len(plan.writes)} write(s) not made")
        return 0
    apply_plan(plan)
    print(f"{settings.grafana_url}: {len(plan.writes)} write(s)")
    return 0
