"""Command downlink, acknowledgements and the status payload."""

from __future__ import annotations

import json
import random

import pytest

import protocol
from core.errors import DecodeError
from protocol.commands import (
    ACK_DETAIL_MAX_CHARS,
    COMMAND_NAMES,
    MAX_COMMAND_BYTES,
    Command,
    CommandAck,
    decode_command,
    decode_command_ack,
    encode_command,
    encode_command_ack,
)
from protocol.status import OFFLINE, ONLINE, decode_status, encode_status


def command_reason(payload: bytes) -> str:
    with pytest.raises(DecodeError) as caught:
        decode_command(payload)
    return caught.value.reason


def ack_reason(payload: bytes) -> str:
    with pytest.raises(DecodeError) as caught:
        decode_command_ack(payload)
    return caught.value.reason


def test_command_names() -> None:
    assert COMMAND_NAMES == ("set_interval", "reboot", "ping")


def test_encode_command_wire_form() -> None:
    payload = encode_command(Command("c-1", "set_interval", {"seconds": 60}))
    assert payload == b'{"id":"c-1","name":"set_interval","params":{"seconds":60}}'
    assert encode_command(Command("c-2", "reboot", {})) == b'{"id":"c-2","name":"reboot","params":{}}'


def test_decode_command() -> None:
    assert decode_command(b'{"id":"c-1","name":"set_interval","params":{"seconds":86400}}') == Command(
        "c-1", "set_interval", {"seconds": 86400}
    )
    assert decode_command(b'{"id":"c-2","name":"ping"}') == Command("c-2", "ping", {})
    assert decode_command(b'{"id":"c-3","name":"reboot","params":{},"sent_at":"x"}').name == "reboot"


def test_command_round_trip_random() -> None:
    rng = random.Random(3)
    id_chars = "abcdefABCDEF0123456789-_.:"
    for _ in range(500):
        command_id = "".join(rng.choices(id_chars, k=rng.randint(1, 64)))
        name = rng.choice(COMMAND_NAMES)
        params: dict[str, object] = {"seconds": rng.randint(1, 86_400)} if name == "set_interval" else {}
        cmd = Command(command_id, name, params)
        assert decode_command(encode_command(cmd)) == cmd


@pytest.mark.parametrize(
    "doc",
    [
        {"id": "c", "name": "set_interval", "params": {"seconds": 0}},
        {"id": "c", "name": "set_interval", "params": {"seconds": 86_401}},
        {"id": "c", "name": "set_interval", "params": {"seconds": 60.0}},
        {"id": "c", "name": "set_interval", "params": {"seconds": True}},
        {"id": "c", "name": "set_interval", "params": {"seconds": "60"}},
        {"id": "c", "name": "set_interval", "params": {}},
        {"id": "c", "name": "set_interval", "params": {"seconds": 60, "jitter": 1}},
        {"id": "c", "name": "set_interval"},
        {"id": "c", "name": "reboot", "params": {"force": True}},
        {"id": "c", "name": "ping", "params": []},
        {"id": "c", "name": "selfdestruct", "params": {}},
        {"id": "", "name": "ping"},
        {"id": "c" * 65, "name": "ping"},
        {"id": "c d", "name": "ping"},
        {"id": 7, "name": "ping"},
        {"name": "ping"},
        {"id": "c"},
        {"id": "c", "name": None},
    ],
)
def test_bad_commands(doc: dict[str, object]) -> None:
    assert command_reason(json.dumps(doc).encode()) == "bad_command"


@pytest.mark.parametrize(
    "payload",
    [b"", b"ping", b"[1]", b'"ping"', b"\xff\xfe", b"{" * 10_000, b" " * (MAX_COMMAND_BYTES + 1)],
)
def test_command_payloads_that_are_not_json_objects(payload: bytes) -> None:
    assert command_reason(payload) == "bad_command"


def test_encode_command_refuses_invalid() -> None:
    with pytest.raises(ValueError, match="seconds"):
        encode_command(Command("c", "set_interval", {"seconds": 0}))
    with pytest.raises(ValueError, match="unknown command"):
        encode_command(Command("c", "format_disk", {}))
    with pytest.raises(ValueError, match="command id"):
        encode_command(Command("", "ping", {}))


def test_acks() -> None:
    assert encode_command_ack(CommandAck("c-1", "ok")) == b'{"id":"c-1","status":"ok","detail":""}'
    assert decode_command_ack(b'{"id":"c-1","status":"ok"}') == CommandAck("c-1", "ok", "")
    failed = CommandAck("c-2", "error", "interval below hardware minimum — 5 s")
    assert decode_command_ack(encode_command_ack(failed)) == failed


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"ok",
        b"[]",
        b'{"id":"c","status":"done"}',
        b'{"id":"c","status":"OK"}',
        b'{"id":"c"}',
        b'{"status":"ok"}',
        b'{"id":"","status":"ok"}',
        b'{"id":"c","status":"error","detail":5}',
        json.dumps({"id": "c", "status": "error", "detail": "x" * (ACK_DETAIL_MAX_CHARS + 1)}).encode(),
    ],
)
def test_bad_acks(payload: bytes) -> None:
    assert ack_reason(payload) == "bad_command_ack"


def test_encode_ack_refuses_invalid() -> None:
    with pytest.raises(ValueError, match="status"):
        encode_command_ack(CommandAck("c", "maybe"))


def test_status_payloads() -> None:
    assert ONLINE == b"online"
    assert OFFLINE == b"offline"
    assert decode_status(b"online") is True
    assert decode_status(b"offline") is False
    assert encode_status(online=True) == b"online"
    assert encode_status(online=False) == b"offline"
    for payload in (b"", b"Online", b"online\n", b"1", b'"online"', b"\xff"):
        with pytest.raises(DecodeError) as caught:
            decode_status(payload)
        assert caught.value.reason == "bad_status"


def test_package_exports() -> None:
    assert set(protocol.__all__) <= set(dir(protocol))
    assert protocol.decode_telemetry is not None
    assert "Telemetry" in protocol.__all__
    assert "parse_topic" in protocol.__all__
