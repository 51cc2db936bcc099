"""The embedded runtime: a private Mosquitto and a private PostgreSQL (with TimescaleDB) on free local ports.

Used by `ioc up`/`ioc demo` when no external URLs are configured, and by the integration tests, which stop and
restart these services mid-stream. PostgreSQL refuses to run as root, so as root both services run as the
unprivileged system user `ioc`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self
from urllib.parse import quote

if TYPE_CHECKING:
    from devices.access import BrokerAccessTarget

from core.errors import RuntimeServiceError

_LOGGER = logging.getLogger(__name__)

SERVICE_USER = "ioc"
DATABASE_NAME = "ioc"
_PG_CONF = "ioc.conf"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0
CENTER_MQTT_USERNAME = "ioc-center"


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _service_user() -> pwd.struct_passwd | None:
    """The user services run as: None means the current user (not root)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
            check=True,
        )
        return pwd.getpwnam(SERVICE_USER)


def _as_service_user(argv: list[str]) -> list[str]:
    user = _service_user()
    return argv if user is None else ["runuser", "-u", user.pw_name, "--", *argv]


def _own_dir(path: Path) -> None:
    """Create `path` and give it to the service user; its parents must let that user pass."""
    path.mkdir(parents=True, exist_ok=True)
    user = _service_user()
    if user is None:
        return
    os.chown(path, user.pw_uid, user.pw_gid)
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            raise RuntimeServiceError(
                f"{parent} is not traversable by the service user {SERVICE_USER!r}; "
                f"run `chmod o+x {parent}` or set IOC_RUNTIME_DIR to a folder under a traversable path"
            )


def _pg_bindir() -> Path:
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        raise RuntimeServiceError("pg_config not found: run `make setup` (scripts/setup.sh) first")
    out = subprocess.run([pg_config, "--bindir"], check=True, capture_output=True, text=True).stdout
    return Path(out.strip())


class _EmbeddedService:
    """A service started on entering a `with` block and stopped on leaving it."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class EmbeddedPostgres(_EmbeddedService):
    """A private PostgreSQL cluster with TimescaleDB preloaded; `with EmbeddedPostgres(dir) as pg: pg.url`."""

    def __init__(self, root: Path, *, port: int | None = None) -> None:
        self.root = root.resolve()
        self.data_dir = self.root / "data"
        self.log_file = root / "postgres.log"
        self.port = port or find_free_port()
        self._bindir = _pg_bindir()

    @property
    def url(self) -> str:
        return f"postgresql://{SERVICE_USER}@127.0.0.1:{self.port}/{DATABASE_NAME}"

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = _as_service_user([str(self._bindir / "pg_ctl"), "-D", str(self.data_dir), *args])
        result = subprocess.run(argv, capture_output=True, text=True, timeout=START_TIMEOUT_S, check=False)
        if check and result.returncode != 0:
            raise RuntimeServiceError(
                f"pg_ctl {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}; see {self.log_file}"
            )
        return result

    def _init_cluster(self) -> None:
        _own_dir(self.root)
        argv = _as_service_user(
            [
                str(self._bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SERVICE_USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        )
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeServiceError(f"initdb failed: {result.stderr.strip()}")

    def _write_settings(self) -> None:
        """The cluster's settings, rewritten at each start so a changed default reaches existing clusters."""
        main_conf = self.data_dir / "postgresql.conf"
        include = f"include_if_exists = '{_PG_CONF}'"
        if include not in main_conf.read_text(encoding="utf-8"):
            with main_conf.open("a", encoding="utf-8") as fh:
                fh.write(f"\n# ioc embedded runtime: its settings, rewritten at every start\n{include}\n")
        path = self.data_dir / _PG_CONF
        path.write_text(
            "shared_preload_libraries = 'timescaledb'\n"
            "timescaledb.telemetry_level = off\n"
            "listen_addresses = '127.0.0.1'\n"
            # TCP only: socket paths under a deep checkout exceed the 107-byte limit.
            "unix_socket_directories = ''\n"
            "max_connections = 200\n"
            "shared_buffers = 512MB\n"
            "work_mem = 16MB\n"
            "maintenance_work_mem = 256MB\n"
            "max_wal_size = 4GB\n"
            "checkpoint_timeout = 15min\n"
            # Compressing full-page images costs the database more CPU than the I/O it saves on these machines.
            "wal_compression = off\n"
            "max_locks_per_transaction = 256\n"
            "timescaledb.max_background_workers = 4\n"
            "max_worker_processes = 16\n",
            encoding="utf-8",
        )
        user = _service_user()
        if user is not None:
            os.chown(path, user.pw_uid, user.pw_gid)

    def start(self) -> None:
        if not (self.data_dir / "PG_VERSION").exists():
            self._init_cluster()
        elif (self.data_dir / "postmaster.pid").exists() and self._pg_ctl("status", check=False).returncode == 0:
            # Left running by a process that was killed: it is ours (our data folder), stop it first.
            _LOGGER.warning("stopping a PostgreSQL left running in %s", self.data_dir)
            self._pg_ctl("-w", "-m", "fast", "stop", check=False)
        self._write_settings()
        self._pg_ctl("-w", "-t", str(int(START_TIMEOUT_S)), "-l", str(self.log_file), "-o", f"-p {self.port}", "start")
        self._ensure_database()
        _LOGGER.info("embedded PostgreSQL on port %s (%s)", self.port, self.data_dir)

    def _ensure_database(self) -> None:
        psql = [str(self._bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", SERVICE_USER]
        exists = subprocess.run(
            [*psql, "-d", "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}'"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if exists != "1":
            subprocess.run(
                [*psql, "-d", "postgres", "-c", f"CREATE DATABASE {DATABASE_NAME}"],
                capture_output=True,
                check=True,
            )

    def stop(self, *, mode: str = "fast") -> None:
        """Stop the cluster: `fast` (clean), or `immediate` (like a crash: recovery runs on next start)."""
        if (self.data_dir / "postmaster.pid").exists():
            self._pg_ctl("-w", "-m", mode, "stop", check=False)


def _raise_nofile_limit() -> None:
    """Let children (the broker) hold one descriptor per connected device: lift the soft open-file limit to the hard."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):  # an unlimited hard limit is beyond the kernel's nr_open
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class EmbeddedMosquitto(_EmbeddedService):
    """A private Mosquitto 2 broker with persistence on; `with EmbeddedMosquitto(dir) as mq: mq.url`.

    `extra_config` lines are appended to the generated config. With `auth=True` nobody connects anonymously:
    the center uses the user `ioc-center` (its password is generated once into `center.secret`, mode 0600, and
    is part of `url`), devices use the password file and ACL that `devices.access` renders from the registry.
    """

    def __init__(
        self, root: Path, *, port: int | None = None, extra_config: tuple[str, ...] = (), auth: bool = False
    ) -> None:
        self.root = root.resolve()
        self.port = port or find_free_port()
        self.config_file = self.root / "mosquitto.conf"
        self.log_file = self.root / "mosquitto.log"
        self.password_file = self.root / "passwd"
        self.acl_file = self.root / "acl"
        self.extra_config = extra_config
        self.auth = auth
        self._center_secret_file = self.root / "center.secret"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Where the center connects: with the center's credentials when `auth` is on."""
        if not self.auth:
            return self.device_url
        return f"mqtt://{CENTER_MQTT_USERNAME}:{quote(self.center_password, safe='')}@127.0.0.1:{self.port}"

    @property
    def device_url(self) -> str:
        """The broker's address without credentials (devices bring their own)."""
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def center_password(self) -> str:
        """The center's broker password, generated on first use and kept readable by this user only."""
        if not self._center_secret_file.exists():
            import secrets

            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._center_secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(secrets.token_urlsafe(24))
        return self._center_secret_file.read_text(encoding="utf-8").strip()

    def access_target(self) -> BrokerAccessTarget:
        """Where `devices.access` writes this broker's access files and how it reloads them."""
        from devices.access import BrokerAccessTarget

        return BrokerAccessTarget(
            password_file=self.password_file,
            acl_file=self.acl_file,
            center_username=CENTER_MQTT_USERNAME,
            center_password=self.center_password,
            reload=self.reload,
        )

    def _write_access_files(self) -> None:
        """First start: only the center may connect until the registry is synced; later starts keep the files."""
        from devices.access import write_access_files

        if self.password_file.exists() and self.acl_file.exists():
            return  # the registry sync of the center that starts now rewrites them
        for path in (self.password_file, self.acl_file):
            path.touch(mode=0o600)
            user = _service_user()
            if user is not None:
                os.chown(path, user.pw_uid, user.pw_gid)
        write_access_files(self.access_target(), [])

    def _write_config(self) -> None:
        _own_dir(self.root)
        if self.auth:
            self._write_access_files()
            access = ["allow_anonymous false", f"password_file {self.password_file}", f"acl_file {self.acl_file}"]
        else:
            access = ["allow_anonymous true"]
        lines = [
            f"listener {self.port} 127.0.0.1",
            *access,
            "persistence true",
            f"persistence_location {self.root}/",
            "autosave_interval 30",
            # Ingest acknowledges only after commit: a batch of thousands of messages is in flight at once.
            "max_inflight_messages 0",
            "max_queued_messages 2000000",
            "max_queued_bytes 0",
            "message_size_limit 1048576",
            "persistent_client_expiration 7d",
            "log_type error",
            "log_type warning",
            "log_type notice",
            f"log_dest file {self.log_file}",
            *self.extra_config,
        ]
        self.config_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        user = _service_user()
        if user is not None:
            os.chown(self.config_file, user.pw_uid, user.pw_gid)
            with contextlib.suppress(FileNotFoundError):
                os.chown(self.log_file, user.pw_uid, user.pw_gid)

    @property
    def _pid_file(self) -> Path:
        return self.root / "ioc-mosquitto.pid"

    def stop_abandoned(self) -> None:
        """Stop a broker that a killed process left running on this folder, if any."""
        self._stop_orphan()

    def _stop_orphan(self) -> None:
        """Stop a broker that a killed process left running on this folder (its pid is recorded here)."""
        try:
            pid = int(self._pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"mosquitto" in cmdline and str(self.config_file).encode() in cmdline:
                _LOGGER.warning("stopping a Mosquitto left running on %s (pid %s)", self.root, pid)
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + STOP_TIMEOUT_S
                while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
        self._pid_file.unlink(missing_ok=True)

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise RuntimeServiceError("mosquitto not found: run `make setup` (scripts/setup.sh) first")
        self._stop_orphan()
        self._write_config()
        user = _service_user()
        # Started as the service user: mosquitto would otherwise switch to its own `mosquitto` user.
        argv = [binary, "-c", str(self.config_file)]
        _raise_nofile_limit()  # 10,000 simulated devices are 10,000 connections
        self._process = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=None if user is None else user.pw_uid,
            group=None if user is None else user.pw_gid,
            start_new_session=True,
        )
        self._pid_file.write_text(str(self._process.pid))
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _port_open(self.port):
            if self._process.poll() is not None:
                raise RuntimeServiceError(f"mosquitto exited with {self._process.returncode}; see {self.log_file}")
            if time.monotonic() > deadline:
                raise RuntimeServiceError(f"mosquitto did not listen on {self.port}; see {self.log_file}")
            time.sleep(0.05)
        _LOGGER.info("embedded Mosquitto on port %s", self.port)

    def reload(self) -> None:
        """Re-read password and ACL files (SIGHUP)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        """Stop cleanly: SIGTERM makes Mosquitto save its persistence file first."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        self._pid_file.unlink(missing_ok=True)
