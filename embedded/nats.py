"""NATS nodes with JetStream and the MQTT listener: their configuration files and their processes.

The distributed ingest path (ARCHITECTURE.md, "Scale-out"): devices speak MQTT 3.1.1 to any node of a NATS cluster;
each QoS 1 PUBLISH is stored in the account's `$MQTT_msgs` stream (replicated on `stream_replicas` nodes) before the
node sends PUBACK, and ingest workers share one durable JetStream pull consumer on that stream
(`ingest.jetstream_source`). Accounts are least-rights: a device may publish only under its own topic prefix and
subscribe only to its own `cmd`; the ingest account may only consume the telemetry stream.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from core.errors import RuntimeServiceError
from embedded.runtime import end_process, port_open

_LOGGER = logging.getLogger(__name__)

NATS_BINARY_CANDIDATES: Final = ("nats-server", "/usr/sbin/nats-server")
START_TIMEOUT_S: Final = 30.0
STOP_TIMEOUT_S: Final = 15.0
# The stream nats-server keeps QoS 1 MQTT messages in (one per account) and the subject prefix of its messages.
MQTT_STREAM: Final = "$MQTT_msgs"
MQTT_STREAM_SUBJECT_PREFIX: Final = "$MQTT.msgs."
# Where the ioc topics land in it: MQTT `ioc/v1/…` is NATS `ioc.v1.…`.
TELEMETRY_STREAM_FILTER: Final = MQTT_STREAM_SUBJECT_PREFIX + "ioc.v1.>"
INGEST_DURABLE: Final = "ioc-ingest"


@dataclass(frozen=True, slots=True)
class NatsUser:
    """One account of the cluster; `repr` never shows the password."""

    name: str
    password: str = field(repr=False)
    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    # "STANDARD" (NATS clients) or "MQTT" (devices).
    connection_types: tuple[str, ...] = ("STANDARD",)


def device_user(*, device_id: str, province: str, sector: str, password: str) -> NatsUser:
    """A device's account: publish its own telemetry, status and command acks; subscribe to its own commands.
    Nothing else (no wildcards, no `$` subjects, no other device); MQTT connections only."""
    prefix = f"ioc.v1.{province}.{sector}.{device_id}"
    return NatsUser(
        name=device_id,
        password=password,
        publish=(f"{prefix}.telemetry", f"{prefix}.telemetry.senml", f"{prefix}.status", f"{prefix}.cmd.ack"),
        subscribe=(f"{prefix}.cmd",),
        connection_types=("MQTT",),
    )


def ingest_user(*, name: str, password: str, durable: str = INGEST_DURABLE) -> NatsUser:
    """Ingest's account: create or bind its durable consumer on the MQTT message stream, pull from it, and
    acknowledge; replies come to its own inbox. It may not publish telemetry nor read other streams."""
    stream = MQTT_STREAM
    return NatsUser(
        name=name,
        password=password,
        publish=(
            "$JS.API.INFO",
            f"$JS.API.STREAM.INFO.{stream}",
            f"$JS.API.STREAM.CREATE.{stream}",
            f"$JS.API.CONSUMER.INFO.{stream}.{durable}",
            f"$JS.API.CONSUMER.CREATE.{stream}.{durable}",
            f"$JS.API.CONSUMER.CREATE.{stream}.{durable}.>",
            f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{durable}",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}",
            f"$JS.ACK.{stream}.{durable}.>",
        ),
        subscribe=("_INBOX.>",),
    )


@dataclass(frozen=True, slots=True)
class NatsNodeSpec:
    """Where one node listens and which peers it routes to; `routes` are `host:cluster_port` of the others."""

    name: str
    host: str
    client_port: int
    cluster_port: int
    mqtt_port: int
    routes: tuple[str, ...] = ()
    cluster_name: str = "ioc"
    # Replicas of the MQTT streams (messages, sessions, retained): 3 in a 3-node cluster, 1 alone.
    stream_replicas: int = 1
    # Unacknowledged QoS 1 deliveries to MQTT subscribers are sent again after this long.
    mqtt_ack_wait_s: float = 30.0
    max_file_store_bytes: int = 8 * 2**30
    max_memory_store_bytes: int = 256 * 2**20

    @property
    def client_url(self) -> str:
        return f"nats://{self.host}:{self.client_port}"

    @property
    def mqtt_address(self) -> tuple[str, int]:
        return self.host, self.mqtt_port


def _quote(value: str) -> str:
    """A string in NATS configuration syntax (its JSON-compatible quoted form)."""
    return json.dumps(value)


def _string_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(_quote(v) for v in values) + "]"


def _render_user(user: NatsUser) -> str:
    lines = [f"    {{user: {_quote(user.name)}, password: {_quote(user.password)},"]
    lines.append(f"     allowed_connection_types: {_string_list(user.connection_types)},")
    lines.append(
        "     permissions: {"
        f"publish: {{allow: {_string_list(user.publish)}}}, "
        f"subscribe: {{allow: {_string_list(user.subscribe)}}}}}}}"
    )
    return "\n".join(lines)


def render_nats_config(spec: NatsNodeSpec, *, store_dir: Path, users: Sequence[NatsUser]) -> str:
    """The configuration file of one node: JetStream on, the cluster routes, the MQTT listener, the accounts.

    nats-server's MQTT support needs `server_name` and JetStream; in a cluster its own streams are replicated
    `stream_replicas` times, so a QoS 1 PUBLISH is acknowledged only once a majority of replicas stored it."""
    if not users:
        raise ValueError("a NATS node needs at least one account: nobody connects anonymously")
    lines = [
        "# Generated by ioc (embedded.nats); edits are overwritten.",
        f"server_name: {_quote(spec.name)}",
        f"listen: {_quote(f'{spec.host}:{spec.client_port}')}",
        "max_payload: 1MB",
        "jetstream {",
        f"  store_dir: {_quote(str(store_dir))}",
        f"  max_file_store: {spec.max_file_store_bytes}",
        f"  max_memory_store: {spec.max_memory_store_bytes}",
        "}",
        "mqtt {",
        f"  host: {_quote(spec.host)}",
        f"  port: {spec.mqtt_port}",
        f"  stream_replicas: {spec.stream_replicas}",
        f"  ack_wait: {_quote(f'{spec.mqtt_ack_wait_s:g}s')}",
        "}",
    ]
    if spec.routes:
        lines += [
            "cluster {",
            f"  name: {_quote(spec.cluster_name)}",
            f"  listen: {_quote(f'{spec.host}:{spec.cluster_port}')}",
            f"  routes: {_string_list([f'nats-route://{r}' for r in spec.routes])}",
            "}",
        ]
    lines += ["authorization {", "  users: [", *[_render_user(u) for u in users], "  ]", "}"]
    return "\n".join(lines) + "\n"


def cluster_specs(
    hosts: Sequence[str], *, client_port: int, cluster_port: int, mqtt_port: int, names: Sequence[str] | None = None
) -> list[NatsNodeSpec]:
    """One spec per host, each routing to all the others; the MQTT streams replicated on up to three nodes."""
    replicas = min(3, len(hosts))
    names = list(names) if names is not None else [f"n{i + 1}" for i in range(len(hosts))]
    return [
        NatsNodeSpec(
            name=names[i],
            host=host,
            client_port=client_port,
            cluster_port=cluster_port,
            mqtt_port=mqtt_port,
            routes=tuple(f"{h}:{cluster_port}" for h in hosts if h != host),
            stream_replicas=replicas,
        )
        for i, host in enumerate(hosts)
    ]


def _nats_binary() -> str:
    for candidate in NATS_BINARY_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    raise RuntimeServiceError("nats-server not found: install Debian's nats-server package")


def _port_open(host: str, port: int, *, argv_prefix: Sequence[str]) -> bool:
    if argv_prefix:  # inside a network namespace: probe from there
        probe = [*argv_prefix, "bash", "-c", f"exec 3<>/dev/tcp/{host}/{port}"]
        return subprocess.run(probe, capture_output=True, check=False, timeout=5).returncode == 0
    return port_open(port, host)


class NatsNode:
    """One nats-server process: `with NatsNode(spec, root, users=…) as node:` writes its config, starts it and
    waits for its MQTT port; leaving the block stops it. `argv_prefix` runs it elsewhere, e.g.
    `("ip", "netns", "exec", "host1")` inside a network namespace."""

    def __init__(
        self, spec: NatsNodeSpec, root: Path, *, users: Sequence[NatsUser], argv_prefix: Sequence[str] = ()
    ) -> None:
        self.spec = spec
        self.root = root.resolve()
        self.users = tuple(users)
        self.argv_prefix = tuple(argv_prefix)
        self.config_file = self.root / "nats.conf"
        self.log_file = self.root / "nats.log"
        self.store_dir = self.root / "jetstream"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def write_config(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        text = render_nats_config(self.spec, store_dir=self.store_dir, users=self.users)
        self.config_file.write_text(text, encoding="utf-8")
        self.config_file.chmod(0o600)  # it holds the accounts' passwords

    def start(self, *, wait: bool = True) -> None:
        self.write_config()
        argv = [*self.argv_prefix, _nats_binary(), "-c", str(self.config_file), "-l", str(self.log_file)]
        self._process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        if wait:
            self.wait_listening()

    def wait_listening(self, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        host, port = self.spec.mqtt_address
        while not _port_open(host, port, argv_prefix=self.argv_prefix):
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeServiceError(f"nats-server {self.spec.name} exited; see {self.log_file}")
            if time.monotonic() > deadline:
                raise RuntimeServiceError(f"nats-server {self.spec.name} did not listen on {port}; see {self.log_file}")
            time.sleep(0.1)

    def reload(self) -> None:
        """Re-read the configuration file (accounts added or removed) without dropping connections."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGHUP)

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """Stop at once, as a crash would (SIGKILL)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def stop(self) -> None:
        if self._process is None:
            return
        end_process(self._process, timeout_s=STOP_TIMEOUT_S)
        self._process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class NatsCluster:
    """Several nodes started together (routes need their peers to form the cluster), stopped together."""

    def __init__(self, nodes: Sequence[NatsNode]) -> None:
        self.nodes = list(nodes)
        self._running = contextlib.ExitStack()

    @property
    def client_urls(self) -> list[str]:
        return [n.spec.client_url for n in self.nodes]

    def __enter__(self) -> Self:
        with contextlib.ExitStack() as stack:
            for node in self.nodes:
                stack.callback(node.stop)
                node.start(wait=False)
            for node in self.nodes:
                node.wait_listening()
            self._running = stack.pop_all()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._running.close()
