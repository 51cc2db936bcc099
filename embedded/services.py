"""Where the center's broker and database are: the configured URLs, or embedded services, started and supervised
for the run by this process, or attached to when another live `ioc` process already runs them in the same folder."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from core.settings import Settings
from devices.access import BrokerAccessTarget
from embedded.runtime import EmbeddedMosquitto, EmbeddedPostgres, find_free_port
from embedded.supervisor import ServiceSupervisor

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServiceUrls:
    database_url: str
    # The admin account: operator tools; the parts of the center use their role's URL below.
    mqtt_url: str = field(repr=False)
    # Where the registry's broker password file goes; None = the broker's accounts are managed elsewhere.
    broker_access: BrokerAccessTarget | None = None
    ingest_mqtt_url: str = field(default="", repr=False)
    commands_mqtt_url: str = field(default="", repr=False)
    alerts_mqtt_url: str = field(default="", repr=False)
    # The broker's mqtts address for devices and the CA certificate they trust (None: no TLS listener known).
    device_tls_url: str | None = None
    ca_file: Path | None = None

    def role_url(self, role: str) -> str:
        """The broker URL of one part of the center (`ingest`, `commands`, `alerts`), the admin's when unset."""
        url = {"ingest": self.ingest_mqtt_url, "commands": self.commands_mqtt_url, "alerts": self.alerts_mqtt_url}
        return url.get(role) or self.mqtt_url

    def __repr__(self) -> str:  # URLs carry passwords
        return f"ServiceUrls(device_tls_url={self.device_tls_url!r}, ca_file={self.ca_file!r})"


def _secret(value: object) -> str:
    return "" if value is None else str(value.get_secret_value())  # type: ignore[attr-defined]


def embedded_broker(settings: Settings, root: Path, *, port: int | None, tls_port: int | None) -> EmbeddedMosquitto:
    """The broker ioc runs, as the settings describe it (embedded runtime and `ioc broker` alike)."""
    return EmbeddedMosquitto(
        root,
        port=port,
        auth=True,
        tls=settings.broker_tls,
        tls_port=tls_port,
        plain=settings.broker_plain,
        bind=settings.broker_bind,
        tls_hosts=tuple(settings.broker_tls_hosts),
        ca_cert=settings.broker_ca_file,
        require_client_cert=settings.broker_require_client_cert,
        plugin=settings.broker_acl_plugin,
        accounts={user: password.get_secret_value() for user, password in settings.broker_accounts.items()},
    )


def external_broker_access(settings: Settings) -> BrokerAccessTarget | None:
    """The password file of a broker ioc does not run, when the operator lets the center keep it in sync."""
    if settings.broker_password_file is None:
        return None
    pid_file = settings.broker_pid_file

    def reload() -> None:
        if pid_file is not None:
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGHUP)
            except (OSError, ValueError) as exc:
                _LOGGER.warning("could not make the broker reload its password file: %s", exc)

    accounts = {user: password.get_secret_value() for user, password in settings.broker_accounts.items()}
    return BrokerAccessTarget(password_file=settings.broker_password_file, accounts=accounts, reload=reload)


@contextlib.contextmanager
def center_services(settings: Settings) -> Iterator[ServiceUrls]:
    """The URLs to use; embedded services are started (and restarted when they die) for unset ones and stopped on
    exit, or attached to when another live process runs them in the same runtime folder."""
    with contextlib.ExitStack() as stack:
        owned: list[EmbeddedPostgres | EmbeddedMosquitto] = []
        if settings.database_url is not None:
            database_url = settings.database_url.get_secret_value()
        else:
            pg = stack.enter_context(
                EmbeddedPostgres(settings.runtime_dir / "postgres", port=_sticky_port(settings, "postgres"))
            )
            owned.append(pg)
            database_url = pg.url
        if settings.mqtt_url is not None:
            mqtt_url = settings.mqtt_url.get_secret_value()
            urls = ServiceUrls(
                database_url=database_url,
                mqtt_url=mqtt_url,
                broker_access=external_broker_access(settings),
                ingest_mqtt_url=_secret(settings.mqtt_ingest_url),
                commands_mqtt_url=_secret(settings.mqtt_commands_url),
                alerts_mqtt_url=_secret(settings.mqtt_alerts_url),
                ca_file=settings.broker_ca_file,
            )
        else:
            mq = stack.enter_context(
                embedded_broker(
                    settings,
                    settings.runtime_dir / "mosquitto",
                    port=settings.broker_port or _sticky_port(settings, "mosquitto"),
                    tls_port=settings.broker_tls_port or _sticky_port(settings, "mosquitto-tls"),
                )
            )
            owned.append(mq)
            urls = ServiceUrls(
                database_url=database_url,
                mqtt_url=mq.url,
                broker_access=mq.access_target(),
                ingest_mqtt_url=mq.role_url("ingest"),
                commands_mqtt_url=mq.role_url("commands"),
                alerts_mqtt_url=mq.role_url("alerts"),
                device_tls_url=mq.device_tls_url if mq.tls_port else None,
                ca_file=mq.root / "tls" / "ca.crt" if mq.tls_port else None,
            )
        stack.enter_context(ServiceSupervisor(owned))
        yield urls


def _sticky_port(settings: Settings, service: str) -> int | None:
    """The port a service used last time, so clients with persistent sessions find it again."""
    path = settings.runtime_dir / f"{service}.port"
    if path.exists():
        port = int(path.read_text().strip())
        with contextlib.suppress(OSError), socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # still free: take it again
            return port
        # Taken, most likely by the live owner this process attaches to: its port stays the recorded one.
        return find_free_port()
    settings.runtime_dir.mkdir(parents=True, exist_ok=True)
    port = find_free_port()
    path.write_text(str(port))
    return port
