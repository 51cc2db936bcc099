"""Where the center's broker and database are: the configured URLs, or embedded services started for the run."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from core.settings import Settings
from devices.access import BrokerAccessTarget
from embedded.runtime import EmbeddedMosquitto, EmbeddedPostgres, find_free_port

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServiceUrls:
    database_url: str
    mqtt_url: str
    # Where the registry's broker access files go; None = the broker is managed elsewhere.
    broker_access: BrokerAccessTarget | None = None


@contextlib.contextmanager
def center_services(settings: Settings) -> Iterator[ServiceUrls]:
    """The URLs to use; embedded services are started for unset ones and stopped on exit."""
    with contextlib.ExitStack() as stack:
        broker_access: BrokerAccessTarget | None = None
        if settings.database_url is not None:
            database_url = settings.database_url.get_secret_value()
        else:
            pg = stack.enter_context(
                EmbeddedPostgres(settings.runtime_dir / "postgres", port=_sticky_port(settings, "postgres"))
            )
            database_url = pg.url
        if settings.mqtt_url is not None:
            mqtt_url = settings.mqtt_url.get_secret_value()
        else:
            mq = stack.enter_context(
                EmbeddedMosquitto(
                    settings.runtime_dir / "mosquitto", port=_sticky_port(settings, "mosquitto"), auth=True
                )
            )
            mqtt_url = mq.url
            broker_access = mq.access_target()
        yield ServiceUrls(database_url=database_url, mqtt_url=mqtt_url, broker_access=broker_access)


def _sticky_port(settings: Settings, service: str) -> int | None:
    """The port a service used last time, so clients with persistent sessions find it again."""
    path = settings.runtime_dir / f"{service}.port"
    if path.exists():
        port = int(path.read_text().strip())
        with contextlib.suppress(OSError), socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # still free: take it again
            return port
    settings.runtime_dir.mkdir(parents=True, exist_ok=True)
    port = find_free_port()
    path.write_text(str(port))
    return port
