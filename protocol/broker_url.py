"""Broker addresses: `mqtt://user:password@host:port` (and `mqtts://`) parsed into their parts."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from core.errors import IocError

DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883


class BrokerUrlError(IocError):
    """A broker URL that cannot be used."""


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False

    def with_credentials(self, username: str | None, password: str | None) -> BrokerAddress:
        return BrokerAddress(host=self.host, port=self.port, username=username, password=password, tls=self.tls)

    def __repr__(self) -> str:  # never print a password
        return f"BrokerAddress(host={self.host!r}, port={self.port}, username={self.username!r}, tls={self.tls})"


def parse_broker_url(url: str) -> BrokerAddress:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise BrokerUrlError(f"broker URL must start with mqtt:// or mqtts://, got {parts.scheme!r}")
    tls = parts.scheme in ("mqtts", "ssl")
    if not parts.hostname:
        raise BrokerUrlError("broker URL has no host")
    try:
        port = parts.port or (DEFAULT_TLS_PORT if tls else DEFAULT_PORT)
    except ValueError as exc:
        raise BrokerUrlError(f"broker URL has a bad port: {exc}") from exc
    return BrokerAddress(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=tls,
    )
