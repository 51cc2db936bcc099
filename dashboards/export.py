"""`ioc dashboards export DIR`: the files Grafana's file provisioning reads.

    DIR/provisioning/datasources/ioc.yaml    the datasource (password from $IOC_GRAFANA_DB_PASSWORD)
    DIR/provisioning/dashboards/ioc.yaml     one provider per folder, with the folder's fixed uid
    DIR/dashboards/<folder uid>/<uid>.json   one file per dashboard

Mount DIR/provisioning at /etc/grafana/provisioning and DIR/dashboards at `grafana_path` (docker-compose.yml does).
The output is deterministic, so the files committed under deploy/grafana/ can be checked against the code.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

from dashboards.datasource import DatasourceTarget
from dashboards.definitions import DashboardDefinition, Folder
from dashboards.errors import DashboardsError
from dashboards.validation import validate_dashboard

_LOGGER = logging.getLogger(__name__)

GRAFANA_DASHBOARDS_PATH: Final = "/etc/grafana/dashboards"
PROVIDER_UPDATE_INTERVAL_S: Final = 60
DATASOURCES_FILE: Final = Path("provisioning/datasources/ioc.yaml")
PROVIDERS_FILE: Final = Path("provisioning/dashboards/ioc.yaml")
DASHBOARDS_DIR: Final = Path("dashboards")
_HEADER: Final = "# Written by `ioc dashboards export` from dashboards/ (Python); edit the code, not this file.\n"


@dataclass(frozen=True, slots=True)
class ExportedFiles:
    written: tuple[Path, ...]
    removed: tuple[Path, ...]


def render_files(
    *,
    dashboards: Sequence[DashboardDefinition],
    folders: Sequence[Folder],
    datasource: DatasourceTarget,
    grafana_path: str = GRAFANA_DASHBOARDS_PATH,
) -> dict[Path, str]:
    """Relative path → text of every file, each dashboard validated against the SDK's types first."""
    known = {f.uid for f in folders}
    files: dict[Path, str] = {
        DATASOURCES_FILE: _HEADER + to_yaml(datasource.provisioning_document()),
        PROVIDERS_FILE: _HEADER + to_yaml(providers_document(folders, grafana_path=grafana_path)),
    }
    for dashboard in dashboards:
        if dashboard.folder.uid not in known:
            raise DashboardsError(f"dashboard {dashboard.uid!r} is in folder {dashboard.folder.uid!r}, not provisioned")
        validate_dashboard(dashboard.document)
        path = DASHBOARDS_DIR / dashboard.folder.uid / f"{dashboard.uid}.json"
        files[path] = json.dumps(dashboard.document, indent=2, ensure_ascii=False) + "\n"
    return files


def providers_document(folders: Iterable[Folder], *, grafana_path: str) -> dict[str, object]:
    """One file provider per folder: the folder's title and fixed uid, its own directory of JSON files. The
    dashboards are not editable in the UI (the code is their source) and disappear when their file does."""
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": folder.uid,
                "orgId": 1,
                "folder": folder.title,
                "folderUid": folder.uid,
                "type": "file",
                "disableDeletion": False,
                "allowUiUpdates": False,
                "updateIntervalSeconds": PROVIDER_UPDATE_INTERVAL_S,
                "options": {"path": str(PurePosixPath(grafana_path) / folder.uid)},
            }
            for folder in folders
        ],
    }


def export_files(
    directory: Path,
    *,
    dashboards: Sequence[DashboardDefinition],
    folders: Sequence[Folder],
    datasource: DatasourceTarget,
    grafana_path: str = GRAFANA_DASHBOARDS_PATH,
) -> ExportedFiles:
    """Write the files under `directory`; JSON files left in our folders' directories by dashboards that no
    longer exist are removed (Grafana would keep serving them)."""
    files = render_files(dashboards=dashboards, folders=folders, datasource=datasource, grafana_path=grafana_path)
    written = []
    for relative, text in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    removed = []
    for folder in folders:
        for stale in sorted((directory / DASHBOARDS_DIR / folder.uid).glob("*.json")):
            if stale.relative_to(directory) not in files:
                stale.unlink()
                removed.append(stale)
                _LOGGER.info("removed %s: no such dashboard any more", stale)
    return ExportedFiles(written=tuple(written), removed=tuple(removed))


def to_yaml(value: object, *, indent: int = 0) -> str:
    """A small YAML writer for provisioning documents (maps, lists, strings, numbers, booleans): scalars are
    written as JSON, which YAML reads as the same values, so no string is ever mistaken for another type."""
    pad = " " * indent
    if isinstance(value, Mapping):
        lines = []
        for key, item in value.items():
            if isinstance(item, Mapping | list) and item:
                lines.append(f"{pad}{key}:\n{to_yaml(item, indent=indent + 2)}")
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}\n")
        return "".join(lines)
    if isinstance(value, list):
        lines = []
        for item in value:
            if isinstance(item, Mapping) and item:
                body = to_yaml(item, indent=indent + 2)
                lines.append(f"{pad}- {body[indent + 2 :]}")
            else:
                lines.append(f"{pad}- {_scalar(item)}\n")
        return "".join(lines)
    return f"{pad}{_scalar(value)}\n"


def _scalar(value: object) -> str:
    if isinstance(value, Mapping | list):  # empty
        return "{}" if isinstance(value, Mapping) else "[]"
    if value is None or isinstance(value, bool | int | float | str):
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"cannot write {type(value).__name__} as YAML")
