"""A dashboard's JSON checked against the SDK's types before it leaves the process (export and provisioning).

Two checks: the JSON unmarshals into the SDK's models (panel options and field config into each panel plugin's
own types, targets into our `SqlQuery`) and marshals back to the same JSON, so no key is unknown to the types;
and every value of the unmarshalled models has the type its annotation names (enums by value, literals, unions,
lists and maps), which the generated `from_json` does not check by itself.
"""

from __future__ import annotations

import enum
import json
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any, Final

from grafana_foundation_sdk.cog import plugins as cogplugins
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dashboard_m

from dashboards.errors import DashboardsError
from dashboards.sql import register_sql_variant

_MAX_PROBLEMS: Final = 20


def register_sdk_types() -> None:
    """The SDK's panel and datasource variants plus our SQL target (idempotent: a registry keyed by id)."""
    cogplugins.register_default_plugins()
    register_sql_variant()


def validate_dashboard(document: Mapping[str, Any]) -> dashboard_m.Dashboard:
    """The SDK model of `document`, or `DashboardsError` naming what the types refuse."""
    register_sdk_types()
    where = f"dashboard {document.get('uid')!r}"
    original = json.loads(json.dumps(document))
    try:
        model = dashboard_m.Dashboard.from_json(original)
    except (KeyError, TypeError, ValueError) as exc:
        raise DashboardsError(f"{where}: does not unmarshal into the SDK's types: {exc}") from exc
    problems = list(type_problems(model, path="dashboard"))
    again = json.loads(JSONEncoder().encode(model))
    problems.extend(json_differences(original, again, path="dashboard"))
    if problems:
        listed = "; ".join(problems[:_MAX_PROBLEMS])
        raise DashboardsError(f"{where}: {len(problems)} problem(s) against the SDK's types: {listed}")
    return model


def json_differences(expected: object, actual: object, *, path: str) -> Iterator[str]:
    """Where two JSON values differ (a key the types dropped shows up as missing after the round trip)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual)):
            if key not in actual:
                yield f"{path}.{key} is not a field of the SDK's types"
            elif key not in expected:
                yield f"{path}.{key} was added by the SDK's types"
            else:
                yield from json_differences(expected[key], actual[key], path=f"{path}.{key}")
    elif isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            yield f"{path} has {len(expected)} items, {len(actual)} after the round trip"
        for index, (e, a) in enumerate(zip(expected, actual, strict=False)):
            yield from json_differences(e, a, path=f"{path}[{index}]")
    elif expected != actual or type(expected) is not type(actual):
        yield f"{path} is {expected!r}, {actual!r} after the round trip"


def type_problems(value: object, *, path: str) -> Iterator[str]:
    """Attributes of an SDK model (recursively) whose value is not of their annotated type."""
    cls = type(value)
    if not hasattr(cls, "to_json") or not hasattr(cls, "__annotations__"):
        return
    hints = _hints(cls)
    for name, hint in hints.items():
        if name.startswith("_") or not hasattr(value, name):
            continue
        yield from _check(getattr(value, name), hint, path=f"{path}.{name}")


def _hints(cls: type) -> dict[str, Any]:
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__.startswith("grafana_foundation_sdk") or klass.__module__.startswith("dashboards"):
            hints.update(typing.get_type_hints(klass))
    return hints


def _check(value: object, hint: Any, *, path: str) -> Iterator[str]:
    if hint is Any or hint is object:
        yield from type_problems(value, path=path)
        return
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return
        # The member that fits, or the one that fits best: its problems are the ones worth reading.
        results = [list(_check(value, a, path=path)) for a in args if a is not type(None)]
        if all(results):
            yield from min(results, key=len)
        return
    if origin is typing.Literal:
        if value not in args:
            yield f"{path} = {_short(value)} is not one of {args}"
        return
    if origin is list:
        if not isinstance(value, list):
            yield f"{path} = {_short(value)} is not a list"
            return
        for index, item in enumerate(value):
            yield from _check(item, args[0] if args else Any, path=f"{path}[{index}]")
        return
    if origin is dict:
        if not isinstance(value, dict):
            yield f"{path} = {_short(value)} is not a map"
            return
        for key, item in value.items():
            yield from _check(item, args[1] if len(args) == 2 else Any, path=f"{path}[{key!r}]")
        return
    if value is None:
        if hint is not type(None):
            yield f"{path} is null, not {_name(hint)}"
        return
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        # from_json keeps the raw JSON value; it must be one of the enum's values.
        if not isinstance(value, hint) and value not in {member.value for member in hint}:
            yield f"{path} = {_short(value)} is not a {hint.__name__}"
        return
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            yield f"{path} = {_short(value)} is not a number"
        return
    if isinstance(hint, type):
        if hint is int and isinstance(value, bool):
            yield f"{path} = {_short(value)} is not an integer"
        elif not isinstance(value, hint):
            yield f"{path} = {_short(value)} is not a {hint.__name__}"
        else:
            yield from type_problems(value, path=path)


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
