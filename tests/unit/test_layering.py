"""The arrows of the layout (ARCHITECTURE.md, "Layout"), checked on every import of every Python file.

Each top-level package may import only the packages listed for it in `MAY_IMPORT` (and itself); nothing outside
`ioc/` imports `ioc`; argparse (the command line) lives only in `ioc/`. Imports count wherever they are written:
at module level, inside functions, under `if TYPE_CHECKING:`, relative, and `importlib.import_module("…")` with a
literal name. A new top-level package fails `test_every_top_level_folder_of_python_code_has_a_rule` until it is
given its arrows here, on purpose.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import pytest

REPO_ROOT: Final = Path(__file__).resolve().parents[2]

_EVERY_PACKAGE: Final = frozenset(
    {
        "core",
        "protocol",
        "mqtt_client",
        "store",
        "devices",
        "ingest",
        "analytics",
        "api",
        "dashboards",
        "firmware_sim",
        "embedded",
        "bench",
        "ioc",
    }
)

# Which of our packages each package may import, besides itself.
MAY_IMPORT: Final[Mapping[str, frozenset[str]]] = {
    "core": frozenset(),
    "protocol": frozenset({"core"}),
    "mqtt_client": frozenset({"core", "protocol"}),
    "store": frozenset({"core"}),
    "devices": frozenset({"store", "protocol", "mqtt_client", "core"}),
    "ingest": frozenset({"protocol", "store", "devices", "mqtt_client", "core"}),
    "analytics": frozenset({"store", "devices", "mqtt_client", "protocol", "core"}),
    "api": frozenset({"store", "devices", "analytics", "protocol", "core"}),
    "dashboards": frozenset({"store", "core"}),
    "firmware_sim": frozenset({"protocol", "core"}),
    "embedded": frozenset({"core", "devices", "store", "protocol"}),
    "bench": _EVERY_PACKAGE - {"ioc"},
    "ioc": _EVERY_PACKAGE,
}
assert set(MAY_IMPORT) == _EVERY_PACKAGE

# Folders of Python code that are not packages of the product: they may import every package but `ioc`.
OUTSIDE: Final = frozenset({"tests", "scripts", "deploy"})
# Every top-level name that is ours: importing one of them is subject to the arrows.
OURS: Final = _EVERY_PACKAGE | OUTSIDE

COMMAND_LINE_PACKAGE: Final = "ioc"
COMMAND_LINE_MODULES: Final = frozenset({"argparse"})
# Standalone entry points of the container stack: run by path with a bare interpreter (compose's `mosquitto-init`),
# never imported, so they parse their own few arguments.
STANDALONE_SCRIPTS: Final = frozenset({"deploy"})

_SKIPPED_DIRS: Final = frozenset({"__pycache__", "node_modules", "build", "dist"})

Kind = Literal["arrow", "ioc", "argparse"]


@dataclass(frozen=True, slots=True)
class ImportSite:
    """One import statement (or literal `import_module` call) and the absolute module names it reaches."""

    line: int
    statement: str
    modules: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Violation:
    path: str
    line: int
    statement: str
    kind: Kind
    why: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.statement}  -- {self.why}"


class RelativeImportError(ValueError):
    """A relative import that climbs above the top-level package."""


def python_files(root: Path = REPO_ROOT) -> Iterator[Path]:
    """Every .py file of the checkout, paths relative to `root`; hidden folders (.venv, .runtime) and build
    output are not ours."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and d not in _SKIPPED_DIRS and not d.endswith(".egg-info")
        )
        for name in sorted(files):
            if name.endswith(".py"):
                yield (Path(folder) / name).relative_to(root)


def top_level_folders(files: list[Path]) -> set[str]:
    return {path.parts[0] for path in files if len(path.parts) > 1}


def _resolve(module: str | None, level: int, package: tuple[str, ...]) -> str:
    """The absolute name of `from {'.' * level}{module} import …` written in `package`."""
    if level == 0:
        return module or ""
    if level > len(package):
        raise RelativeImportError(f"relative import of level {level} above {'.'.join(package) or 'the root'}")
    base = package[: len(package) - level + 1]
    return ".".join((*base, module) if module else base)


def _literal_import_module(node: ast.Call) -> tuple[str, str | None] | None:
    """(name, package) of `importlib.import_module("x")`, `import_module("x")` or `__import__("x")`."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name not in {"import_module", "__import__"} or not node.args:
        return None
    first = node.args[0]
    if not isinstance(first, ast.Constant) or not isinstance(first.value, str):
        return None
    package = next(
        (k.value.value for k in node.keywords if k.arg == "package" and isinstance(k.value, ast.Constant)),
        None,
    )
    return first.value, package if isinstance(package, str) else None


def imports_in(source: str, *, path: Path) -> Iterator[ImportSite]:
    """Every import in `source` (the file at `path`, relative to the repository root), at any depth."""
    package = path.with_suffix("").parts[:-1]  # a module's package; for __init__.py the package itself
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            yield ImportSite(node.lineno, ast.unparse(node), tuple(alias.name for alias in node.names))
        elif isinstance(node, ast.ImportFrom):
            statement = ast.unparse(node)
            try:
                base = _resolve(node.module, node.level, package)
            except RelativeImportError:
                yield ImportSite(node.lineno, statement, ())
                continue
            # `from . import a, b`: the names are modules of the package.
            modules = tuple(f"{base}.{alias.name}" for alias in node.names) if node.module is None else (base,)
            yield ImportSite(node.lineno, statement, modules)
        elif isinstance(node, ast.Call):
            literal = _literal_import_module(node)
            if literal is None:
                continue
            name, anchor = literal
            if name.startswith("."):
                if anchor is None:
                    continue  # relative to a package known only at run time
                level = len(name) - len(name.lstrip("."))
                try:
                    resolved = _resolve(name[level:] or None, level, tuple(anchor.split(".")))
                except RelativeImportError:
                    continue
                name = resolved
            yield ImportSite(node.lineno, ast.unparse(node), (name,))


def violations_in(source: str, *, path: Path) -> list[Violation]:
    """What `source`, the file at `path` (relative to the repository root), imports against the rules."""
    owner = path.parts[0] if len(path.parts) > 1 else ""
    if owner in MAY_IMPORT:
        allowed = MAY_IMPORT[owner] | {owner}
        who = f"{owner} may import only {', '.join(sorted(MAY_IMPORT[owner])) or 'nothing of ours'}"
    else:
        allowed = OURS - {COMMAND_LINE_PACKAGE}
        who = f"{owner or 'the repository root'}/ may import every package but {COMMAND_LINE_PACKAGE}"
    found: list[Violation] = []
    for site in imports_in(source, path=path):
        if not site.modules:
            found.append(Violation(str(path), site.line, site.statement, "arrow", "relative import above the package"))
            continue
        for module in site.modules:
            top = module.split(".")[0]
            if top in COMMAND_LINE_MODULES and owner not in {COMMAND_LINE_PACKAGE, *STANDALONE_SCRIPTS}:
                why = "the command line lives only in ioc/: expose a function and parse arguments in ioc/"
                found.append(Violation(str(path), site.line, site.statement, "argparse", why))
            elif top == COMMAND_LINE_PACKAGE and owner != COMMAND_LINE_PACKAGE:
                why = "no package but ioc/ imports ioc: move what is needed to a lower layer (core for errors/settings)"
                found.append(Violation(str(path), site.line, site.statement, "ioc", why))
            elif top in OURS and top not in allowed:
                found.append(Violation(str(path), site.line, site.statement, "arrow", f"{who}, not {top}"))
            else:
                continue
            break  # one report per statement
    return found


def repository_violations() -> list[Violation]:
    found: list[Violation] = []
    for path in python_files():
        found.extend(violations_in((REPO_ROOT / path).read_text(encoding="utf-8"), path=path))
    return found


def _report(violations: list[Violation], headline: str) -> str:
    return f"{headline} ({len(violations)}):\n" + "\n".join(f"  {v}" for v in violations)


# --------------------------------------------------------------------------------------------- the repository


def test_every_top_level_folder_of_python_code_has_a_rule() -> None:
    folders = top_level_folders(list(python_files()))
    unruled = sorted(folders - set(MAY_IMPORT) - OUTSIDE)
    missing = sorted(set(MAY_IMPORT) - folders)
    assert not unruled, f"add the arrows of these new packages to MAY_IMPORT in {__name__}: {unruled}"
    assert not missing, f"MAY_IMPORT names packages that no longer exist (remove them): {missing}"


@pytest.fixture(scope="module")
def violations() -> list[Violation]:
    """The whole checkout, walked once for the three rules."""
    return repository_violations()


def test_packages_import_only_the_layers_below_them(violations: list[Violation]) -> None:
    found = [v for v in violations if v.kind == "arrow"]
    assert not found, _report(found, "imports against the arrows of ARCHITECTURE.md")


def test_nothing_outside_ioc_imports_ioc(violations: list[Violation]) -> None:
    found = [v for v in violations if v.kind == "ioc"]
    assert not found, _report(found, "modules outside ioc/ importing ioc")


def test_argparse_is_imported_only_under_ioc(violations: list[Violation]) -> None:
    found = [v for v in violations if v.kind == "argparse"]
    assert not found, _report(found, "argparse outside ioc/")


def test_the_walk_reaches_every_package_and_nested_imports() -> None:
    files = list(python_files())
    assert Path("core/errors.py") in files
    assert Path("tests/unit/test_layering.py") in files
    assert not [f for f in files if f.parts[0] in {".venv", ".runtime"}]
    walked = {f.parts[0] for f in files}
    assert set(MAY_IMPORT) <= walked
    # Every package has imports to check (protocol imports core.errors, for one).
    protocol_imports = [
        module
        for path in files
        if path.parts[0] == "protocol"
        for site in imports_in((REPO_ROOT / path).read_text(encoding="utf-8"), path=path)
        for module in site.modules
    ]
    assert "core.errors" in protocol_imports


# --------------------------------------------------------------------------------------------- the walker itself


def test_walker_finds_an_ioc_import_hidden_in_a_function_under_type_checking() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import core.errors\n"
        "\n"
        "def load() -> None:\n"
        "    if TYPE_CHECKING:\n"
        "        from ioc.settings import Settings\n"
    )
    found = violations_in(source, path=Path("protocol/example.py"))
    assert [(v.path, v.line, v.statement, v.kind) for v in found] == [
        ("protocol/example.py", 6, "from ioc.settings import Settings", "ioc")
    ]
    assert str(found[0]).startswith("protocol/example.py:6: from ioc.settings import Settings  -- ")


def test_walker_finds_an_upward_arrow_and_names_the_allowed_packages() -> None:
    found = violations_in("import store.pool\nfrom devices import catalog\n", path=Path("protocol/x.py"))
    assert [(v.line, v.kind, v.why) for v in found] == [
        (1, "arrow", "protocol may import only core, not store"),
        (2, "arrow", "protocol may import only core, not devices"),
    ]
    assert violations_in("import store.pool\n", path=Path("devices/x.py")) == []
    assert [v.why for v in violations_in("import ingest\n", path=Path("core/x.py"))] == [
        "core may import only nothing of ours, not ingest"
    ]


def test_walker_resolves_relative_imports() -> None:
    # `from .. import analytics` in ingest/sub/mod.py reaches the sibling package ingest.analytics: allowed.
    assert violations_in("from .. import analytics\n", path=Path("ingest/sub/mod.py")) == []
    assert violations_in("from .worker import run\nfrom . import metrics\n", path=Path("ingest/mod.py")) == []
    sites = list(imports_in("from . import a, b\nfrom ..c import d\n", path=Path("store/sub/__init__.py")))
    assert [s.modules for s in sites] == [("store.sub.a", "store.sub.b"), ("store.c",)]
    above = violations_in("from ... import ioc\n", path=Path("protocol/mod.py"))
    assert [(v.kind, v.why) for v in above] == [("arrow", "relative import above the package")]


def test_walker_finds_literal_import_module_calls() -> None:
    source = "import importlib\n\ndef run():\n    return importlib.import_module('analytics.commands')\n"
    found = violations_in(source, path=Path("devices/x.py"))
    assert [(v.line, v.kind, v.statement) for v in found] == [
        (4, "arrow", "importlib.import_module('analytics.commands')")
    ]
    relative = violations_in("import_module('.cli', package='ioc')\n", path=Path("tests/x.py"))
    assert [v.kind for v in relative] == ["ioc"]


def test_walker_finds_argparse_anywhere_but_ioc() -> None:
    source = "def main():\n    import argparse\n"
    assert [(v.line, v.kind) for v in violations_in(source, path=Path("analytics/commands.py"))] == [(2, "argparse")]
    assert [v.kind for v in violations_in(source, path=Path("scripts/tool.py"))] == ["argparse"]
    assert violations_in(source, path=Path("deploy/mosquitto/init.py")) == []
    assert violations_in(source, path=Path("ioc/cli.py")) == []


def test_outside_folders_may_import_everything_but_ioc() -> None:
    source = "import api.app\nimport bench\nimport tests.integration.conftest\nfrom ioc import cli\n"
    found = violations_in(source, path=Path("tests/unit/test_x.py"))
    assert [(v.line, v.kind) for v in found] == [(4, "ioc")]
    # bench may import every package but ioc; the tests are not a package it may build on.
    assert [(v.line, v.kind) for v in violations_in(source, path=Path("bench/x.py"))] == [(3, "arrow"), (4, "ioc")]


def test_third_party_and_standard_imports_are_not_ours() -> None:
    source = "import json\nimport numpy as np\nfrom paho.mqtt import client\nfrom __future__ import annotations\n"
    assert violations_in(source, path=Path("core/x.py")) == []
