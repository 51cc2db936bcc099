"""A lab of "hosts" on one machine: network namespaces joined by veth pairs to one bridge (10.77.0.0/24).

Each host is a namespace with one interface; the bridge's own address (10.77.0.1) is the machine itself, where the
test's database listens through a forwarder. Cutting a host takes its link down: it stays up, alone, as a host whose
network cable was pulled. Everything is removed on exit, also after a failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Protocol

SUBNET_PREFIX = "10.77.0"
BRIDGE_ADDRESS = f"{SUBNET_PREFIX}.1"


class Killable(Protocol):
    def kill(self) -> None: ...


class LabUnavailable(Exception):
    """Namespaces cannot be made here (not root, no `ip`, a container without CAP_NET_ADMIN)."""


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LabUnavailable(f"ip {' '.join(args)}: {result.stderr.strip()}")


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    namespace: str
    address: str
    link: str  # the bridge side of its veth pair

    @property
    def exec_prefix(self) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.namespace)


class Lab:
    """`with Lab() as lab: lab.add_host("n1", 11)`; processes started with `lab.spawn` are killed on exit."""

    def __init__(self) -> None:
        tag = os.getpid() % 100_000
        self._tag = tag
        self.bridge = f"iocbr{tag}"
        self.hosts: dict[str, Host] = {}
        self._processes: list[subprocess.Popen[bytes]] = []
        self._adopted: list[Killable] = []

    def __enter__(self) -> Lab:
        if os.geteuid() != 0:
            raise LabUnavailable("network namespaces need root")
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
        except LabUnavailable:
            raise
        except FileNotFoundError as exc:
            raise LabUnavailable("the `ip` command (iproute2) is missing") from exc
        try:
            _ip("addr", "add", f"{BRIDGE_ADDRESS}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        except BaseException:
            self.close()
            raise
        return self

    def add_host(self, name: str, last_octet: int) -> Host:
        host = Host(
            name=name,
            namespace=f"ioc{self._tag}-{name}",
            address=f"{SUBNET_PREFIX}.{last_octet}",
            link=f"v{self._tag}{name}"[:15],
        )
        self.hosts[name] = host
        peer = f"p{self._tag}{name}"[:15]
        _ip("netns", "add", host.namespace)
        _ip("link", "add", host.link, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", host.namespace)
        _ip("link", "set", host.link, "master", self.bridge)
        _ip("link", "set", host.link, "up")
        ns = ("-n", host.namespace)
        _ip(*ns, "link", "set", peer, "name", "eth0")
        _ip(*ns, "addr", "add", f"{host.address}/24", "dev", "eth0")
        _ip(*ns, "link", "set", "eth0", "up")
        _ip(*ns, "link", "set", "lo", "up")
        return host

    def spawn(
        self, host: Host, argv: Sequence[str], *, env: dict[str, str] | None = None, log: IO[bytes] | None = None
    ) -> subprocess.Popen[bytes]:
        """A process inside the host's namespace, in its own process group (so it can be killed whole)."""
        proc = subprocess.Popen(
            [*host.exec_prefix, *argv],
            env=env,
            stdout=log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
            start_new_session=True,
        )
        self._processes.append(proc)
        return proc

    def spawn_root(self, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        """A process on the machine itself (the bridge side), killed on exit like the hosts' processes."""
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self._processes.append(proc)
        return proc

    def adopt(self, process: Killable) -> None:
        """Something started elsewhere (a NatsNode) that must be killed with the lab."""
        self._adopted.append(process)

    def cut(self, host: Host) -> None:
        """Pull the host's cable: its link on the bridge goes down; the host itself keeps running."""
        _ip("link", "set", host.link, "down")

    @staticmethod
    def crash(proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL a spawned process and everything it started."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def close(self) -> None:
        for adopted in self._adopted:
            with contextlib.suppress(OSError):
                adopted.kill()
        for proc in self._processes:
            if proc.poll() is None:
                self.crash(proc)
        for host in self.hosts.values():
            subprocess.run(["ip", "link", "del", host.link], capture_output=True, check=False)
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)

    def __exit__(self, *exc: object) -> None:
        self.close()
