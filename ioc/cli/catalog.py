"""`ioc devices types` and `ioc provinces`: the reference data a technician picks from, read from the packaged
catalog and provinces files (no database, no service started)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from protocol.topics import SECTORS


def add_types_parser(dsub: Any) -> None:
    """`ioc devices types`, registered inside the `devices` group."""
    types: argparse.ArgumentParser = dsub.add_parser(
        "types", help="device types: metrics with units and ranges, report interval, the names they answer to"
    )
    types.add_argument("type_code", nargs="?", default=None, help="only this type (code or name, e.g. fridge)")
    types.add_argument("--sector", choices=SECTORS, help="only this sector")
    types.add_argument("--json", action="store_true", help="print a JSON array")
    types.set_defaults(func=cmd_types)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    provinces = sub.add_parser("provinces", help="the 34 provinces: code (for topics), Vietnamese and English name")
    provinces.add_argument("--json", action="store_true", help="print a JSON array")
    provinces.set_defaults(func=cmd_provinces)


def cmd_types(args: argparse.Namespace) -> int:
    from devices.catalog import load_catalog
    from devices.naming import resolve_type_code

    catalog = load_catalog()
    chosen = list(catalog)
    if args.type_code is not None:
        chosen = [catalog.types[resolve_type_code(catalog, args.type_code)]]
    if args.sector is not None:
        chosen = [t for t in chosen if t.sector == args.sector]
    if args.json:
        document = [
            {
                "code": t.code,
                "name": t.name,
                "name_vi": t.name_vi,
                "aliases": list(t.aliases),
                "sector": t.sector,
                "report_interval_s": t.report_interval_s,
                "metrics": [
                    {"name": m.name, "unit": m.unit, "min": m.min, "max": m.max, "description": m.description}
                    for m in t.metrics
                ],
            }
            for t in chosen
        ]
        print(json.dumps(document, ensure_ascii=False, indent=2))
        return 0
    for t in chosen:
        also = f"; also: {', '.join(t.aliases)}" if t.aliases else ""
        print(f"{t.code}\t{t.sector}\tevery {t.report_interval_s:g} s\t{t.name} ({t.name_vi or '-'}){also}")
        width = max(len(m.name) for m in t.metrics)
        for m in t.metrics:
            print(f"  {m.name:<{width}}  {m.unit:<8}  [{m.min:g}, {m.max:g}]")
    return 0


def cmd_provinces(args: argparse.Namespace) -> int:
    from devices.provinces import load_provinces

    provinces = list(load_provinces().values())
    if args.json:
        document = [
            {
                "code": p.code,
                "name": p.name,
                "name_en": p.english_name,
                "kind": p.kind,
                "admin_code": p.admin_code,
                "merged_from": list(p.merged_from),
                "aliases": list(p.aliases),
            }
            for p in provinces
        ]
        print(json.dumps(document, ensure_ascii=False, indent=2))
        return 0
    width = max(len(p.code) for p in provinces)
    name_width = max(len(p.name) for p in provinces)
    for p in provinces:
        print(f"{p.code:<{width}}  {p.name:<{name_width}}  {p.english_name}")
    return 0
