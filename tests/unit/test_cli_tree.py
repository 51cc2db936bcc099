"""The command line as a whole, run as the command a user types (`python -m ioc …`): every option of every
command says what it is for, the completion scripts are valid, and the exit codes are the documented ones."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest


def _ioc(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ioc", *argv], capture_output=True, text=True, check=False, timeout=120
    )


@pytest.fixture(scope="module")
def tree() -> dict[str, Any]:
    done = _ioc("commands", "--json")
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node["commands"]:
        yield from _walk(child)


def test_the_tree_reaches_the_nested_commands(tree: dict[str, Any]) -> None:
    names = {node["command"] for node in _walk(tree)}
    assert {"ioc devices create", "ioc devices types", "ioc provinces", "ioc alarms ack", "ioc completion"} <= names
    create = next(node for node in _walk(tree) if node["command"] == "ioc devices create")
    assert {tuple(o["flags"]) for o in create["options"]} >= {("device_id",), ("--type",), ("--province",), ("--json",)}


def test_every_command_and_every_option_has_help_text(tree: dict[str, Any]) -> None:
    silent_commands = [node["command"] for node in _walk(tree) if not node["help"].strip()]
    silent_options = [
        f"{node['command']} {'/'.join(option['flags'])}"
        for node in _walk(tree)
        for option in node["options"]
        if not option["help"].strip()
    ]
    assert silent_commands == [], "commands without help"
    assert silent_options == [], "options without help"


def test_groups_use_the_same_verbs(tree: dict[str, Any]) -> None:
    """create/list/show/update/revoke everywhere; no group says add, ls, new, get, delete or rm for the same."""
    other_words = {"add", "ls", "new", "get", "delete", "rm", "remove", "view", "info"}
    leaves = {node["command"].rsplit(" ", 1)[-1] for node in _walk(tree)}
    assert leaves & other_words == set()


def test_the_bash_completion_script_is_valid_bash_and_completes_the_commands() -> None:
    done = _ioc("completion", "bash")
    assert done.returncode == 0, done.stderr
    assert "provinces" in done.stdout and "alarms" in done.stdout and "--province" in done.stdout
    bash = shutil.which("bash")
    assert bash is not None
    check = subprocess.run([bash, "-n"], input=done.stdout, capture_output=True, text=True, timeout=30, check=False)
    assert check.returncode == 0, check.stderr


def test_the_zsh_completion_script_is_a_compdef_for_ioc_with_option_help() -> None:
    done = _ioc("completion", "zsh")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("#compdef ioc")
    assert "--province[code or name, any case" in done.stdout  # zsh shows each option's help while completing


def test_exit_codes_are_the_documented_ones() -> None:
    help_text = _ioc("--help").stdout
    assert "exit codes:" in help_text and "130" in help_text
    ok = _ioc("provinces", "--json")
    assert ok.returncode == 0 and len(json.loads(ok.stdout)) == 34
    usage = _ioc("devices", "create", "x", "--type", "fridge", "--no-such-option")
    assert usage.returncode == 2 and "usage:" in usage.stderr
    refused = _ioc("devices", "create", "x", "--type", "fridge", "--province", "Hue2")
    assert refused.returncode == 2
    assert refused.stderr == "ioc: unknown province 'Hue2' — did you mean 'hue' (Huế)?\n"
    assert refused.stdout == ""


def test_types_and_provinces_print_units_ranges_and_both_names() -> None:
    types = json.loads(_ioc("devices", "types", "fridge", "--json").stdout)
    assert [t["code"] for t in types] == ["vaccine_fridge"]
    assert types[0]["report_interval_s"] == 300
    assert types[0]["metrics"][0] == {
        "name": "temperature",
        "unit": "Cel",
        "min": -40.0,
        "max": 60.0,
        "description": types[0]["metrics"][0]["description"],
    }
    provinces = {p["code"]: p for p in json.loads(_ioc("provinces", "--json").stdout)}
    assert (provinces["hue"]["name"], provinces["hue"]["name_en"]) == ("Huế", "Hue")
    assert provinces["ho-chi-minh"]["name_en"] == "Ho Chi Minh City"
    table = _ioc("provinces").stdout.splitlines()
    assert any(line.split() == ["hue", "Huế", "Hue"] for line in table)
