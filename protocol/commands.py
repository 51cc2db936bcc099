"""Command downlink (center -> device on `…/cmd`) and its acknowledgement (device -> center on `…/cmd/ack`)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from core.errors import DecodeError

SET_INTERVAL: Final = "set_interval"
REBOOT: Final = "reboot"
PING: Final = "ping"
COMMAND_NAMES: Final = (SET_INTERVAL, REBOOT, PING)
INTERVAL_MIN_S: Final = 1
INTERVAL_MAX_S: Final = 86_400

AckStatus = Literal["ok", "error"]
ACK_STATUSES: Final[tuple[AckStatus, ...]] = ("ok", "error")

MAX_COMMAND_BYTES: Final = 16 * 1024
ACK_DETAIL_MAX_CHARS: Final = 1024
_COMMAND_ID_RE: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


@dataclass(frozen=True, slots=True)
class Command:
    """One command for one device; `params` depends on `name` (see `check_command`)."""

    command_id: str
    name: str
    params: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class CommandAck:
    """A device's answer to a command: `status` is "ok" or "error", `detail` says why on error."""

    command_id: str
    status: str
    detail: str = ""


def command_problem(cmd: Command) -> str | None:
    """Why `cmd` breaks the contract, or None when it is valid."""
    if not isinstance(cmd.command_id, str) or _COMMAND_ID_RE.fullmatch(cmd.command_id) is None:
        return f"bad command id {cmd.command_id!r:.80}"
    if cmd.name not in COMMAND_NAMES:
        return f"unknown command {cmd.name!r:.80}"
    if not isinstance(cmd.params, Mapping):
        return f"params is {type(cmd.params).__name__}"
    if cmd.name == SET_INTERVAL:
        if set(cmd.params) != {"seconds"}:
            return f"set_interval takes exactly 'seconds', got {sorted(map(str, cmd.params))}"
        seconds = cmd.params["seconds"]
        if isinstance(seconds, bool) or not isinstance(seconds, int):
            return f"seconds is {type(seconds).__name__}, not an integer"
        if not INTERVAL_MIN_S <= seconds <= INTERVAL_MAX_S:
            return f"seconds {seconds} outside {INTERVAL_MIN_S}..{INTERVAL_MAX_S}"
    elif cmd.params:
        return f"{cmd.name} takes no params"
    return None


def ack_problem(ack: CommandAck) -> str | None:
    """Why `ack` breaks the contract, or None when it is valid."""
    if not isinstance(ack.command_id, str) or _COMMAND_ID_RE.fullmatch(ack.command_id) is None:
        return f"bad command id {ack.command_id!r:.80}"
    if ack.status not in ACK_STATUSES:
        return f"unknown status {ack.status!r:.40}"
    if not isinstance(ack.detail, str) or len(ack.detail) > ACK_DETAIL_MAX_CHARS:
        return f"detail must be a string of at most {ACK_DETAIL_MAX_CHARS} characters"
    return None


def _dump(doc: Mapping[str, object]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode()


def _load_object(payload: bytes, reason: str) -> dict[str, object]:
    if len(payload) > MAX_COMMAND_BYTES:
        raise DecodeError(reason, f"{len(payload)} bytes, limit {MAX_COMMAND_BYTES}")
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DecodeError(reason, f"not JSON: {str(exc)[:120]}") from exc
    if not isinstance(doc, dict):
        raise DecodeError(reason, f"top level is {type(doc).__name__}")
    return doc


def encode_command(cmd: Command) -> bytes:
    """`{"id":…,"name":…,"params":{…}}`; ValueError for a command that breaks the contract."""
    problem = command_problem(cmd)
    if problem is not None:
        raise ValueError(problem)
    return _dump({"id": cmd.command_id, "name": cmd.name, "params": dict(cmd.params)})


def decode_command(payload: bytes) -> Command:
    """Parse a command; DecodeError("bad_command") when it breaks the contract. Missing params means {}."""
    doc = _load_object(payload, "bad_command")
    params = doc.get("params", {})
    command_id, name = doc.get("id"), doc.get("name")
    if not isinstance(command_id, str) or not isinstance(name, str) or not isinstance(params, dict):
        raise DecodeError("bad_command", "needs string 'id' and 'name' and an object 'params'")
    cmd = Command(command_id, name, params)
    problem = command_problem(cmd)
    if problem is not None:
        raise DecodeError("bad_command", problem)
    return cmd


def encode_command_ack(ack: CommandAck) -> bytes:
    """`{"id":…,"status":…,"detail":…}`; ValueError for an ack that breaks the contract."""
    problem = ack_problem(ack)
    if problem is not None:
        raise ValueError(problem)
    return _dump({"id": ack.command_id, "status": ack.status, "detail": ack.detail})


def decode_command_ack(payload: bytes) -> CommandAck:
    """Parse an acknowledgement; DecodeError("bad_command_ack") when it breaks the contract."""
    doc = _load_object(payload, "bad_command_ack")
    command_id, status, detail = doc.get("id"), doc.get("status"), doc.get("detail", "")
    if not isinstance(command_id, str) or not isinstance(status, str) or not isinstance(detail, str):
        raise DecodeError("bad_command_ack", "needs string 'id', 'status' and 'detail'")
    ack = CommandAck(command_id, status, detail)
    problem = ack_problem(ack)
    if problem is not None:
        raise DecodeError("bad_command_ack", problem)
    return ack
