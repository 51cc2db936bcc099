"""Device status payloads: the retained `online`/`offline` message that is also the device's Last Will."""

from __future__ import annotations

from typing import Final

from core.errors import DecodeError

ONLINE: Final = b"online"
OFFLINE: Final = b"offline"


def encode_status(*, online: bool) -> bytes:
    """The status payload for `online`."""
    return ONLINE if online else OFFLINE


def decode_status(payload: bytes) -> bool:
    """True for `online`, False for `offline`; DecodeError("bad_status") for anything else."""
    if payload == ONLINE:
        return True
    if payload == OFFLINE:
        return False
    raise DecodeError("bad_status", repr(bytes(payload[:40])))
