"""The embedded runtime: a private Mosquitto and a private PostgreSQL (with TimescaleDB) on free local ports.

Used by `ioc up`/`ioc demo` when no external URLs are configured, and by the integration tests, which stop and
restart these services mid-stream. PostgreSQL refuses to run as root, so as root both services run as the
unprivileged system user `ioc`.

One process owns a service folder at a time: it holds an exclusive `flock` on `owner.lock` in the folder for as long
as it runs the service (the kernel drops the lock when the process dies, however it dies). A second `ioc` command
on the same folder finds the lock taken and *attaches*: it uses the running service and never stops it. A service
left running by an owner that is gone is stopped and started afresh.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Self
from urllib.parse import quote

if TYPE_CHECKING:
    from devices.access import BrokerAccessTarget
    from embedded.tls import TlsFiles

from core.errors import RuntimeServiceError
from core.settings import REPO_ROOT

_LOGGER = logging.getLogger(__name__)

SERVICE_USER = "ioc"
DATABASE_NAME = "ioc"
_PG_CONF = "ioc.conf"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0
CENTER_MQTT_USERNAME = "ioc-center"
ACL_PLUGIN_SOURCE = REPO_ROOT / "deploy" / "mosquitto" / "ioc_acl.c"
ACL_PLUGIN_CACHE = REPO_ROOT / ".runtime" / "plugins"
SECRET_BYTES = 24


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on host:port now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def end_process(process: subprocess.Popen[bytes], *, timeout_s: float) -> None:
    """SIGTERM (a service saves its state), then SIGKILL when it has not exited within `timeout_s`."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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


def _give_to_service_user(*paths: Path) -> None:
    user = _service_user()
    if user is None:
        return
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.chown(path, user.pw_uid, user.pw_gid)


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


def read_or_create_secret(path: Path) -> str:
    """A random secret kept in `path` with mode 0600, made on first use (shown nowhere, logged never)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(secrets.token_urlsafe(SECRET_BYTES))
    return path.read_text(encoding="utf-8").strip()


class OwnerLock:
    """Who runs a service folder: an exclusive `flock` on `owner.lock`, held for the owner's lifetime.

    `acquire()` is False when another live process holds it; a dead owner's lock is free again (the kernel
    releases it), which is how a live owner is told from a dead one without trusting a pid that may be reused."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "owner.lock"
        self._fh: IO[str] | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+", encoding="utf-8")  # close-on-exec: children (the services) do not inherit it
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return False
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh
        return True

    @property
    def held(self) -> bool:
        return self._fh is not None

    def owner_pid(self) -> int | None:
        try:
            return int(self.path.read_text(encoding="utf-8").strip() or "0") or None
        except (FileNotFoundError, ValueError):
            return None

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()  # closing drops the flock
            self._fh = None


class _EmbeddedService:
    """A service started on entering a `with` block and stopped on leaving it, unless another live process owns
    its folder: then the block attaches to the running service and leaves it running."""

    root: Path
    name = "service"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.lock = OwnerLock(self.root)
        self.attached = False

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def running(self) -> bool:
        """True while the service answers (cheap: used by the supervisor every half second)."""
        raise NotImplementedError

    def attach(self) -> None:
        """Use the service another live process owns (its ports and secrets are in the folder)."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.lock.acquire():
            try:
                self.start()
            except BaseException:
                self.lock.release()
                raise
            return self
        owner = self.lock.owner_pid()
        _LOGGER.info("embedded %s in %s is run by process %s: attaching to it", self.name, self.root, owner)
        self.attached = True
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                self.attach()
                break
            except (FileNotFoundError, ValueError, RuntimeServiceError):
                if time.monotonic() > deadline:
                    raise RuntimeServiceError(
                        f"the embedded {self.name} in {self.root} is owned by process {owner} but does not answer"
                    ) from None
                time.sleep(0.2)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.attached:
            return  # another process's service: never stopped from here
        try:
            self.stop()
        finally:
            self.lock.release()


class EmbeddedPostgres(_EmbeddedService):
    """A private PostgreSQL cluster with TimescaleDB preloaded; `with EmbeddedPostgres(dir) as pg: pg.url`.

    Logins need the password of the role `ioc` (SCRAM), generated at first start into `ioc.secret` (mode 0600);
    pg_hba.conf is rewritten at every start: password over TCP only, no trust, no replication connections."""

    name = "PostgreSQL"

    def __init__(self, root: Path, *, port: int | None = None) -> None:
        super().__init__(root)
        self.data_dir = self.root / "data"
        self.log_file = self.root / "postgres.log"
        self.secret_file = self.root / "ioc.secret"
        self.port = port or find_free_port()
        self._bindir = _pg_bindir()

    @property
    def password(self) -> str:
        return read_or_create_secret(self.secret_file)

    @property
    def url(self) -> str:
        return f"postgresql://{SERVICE_USER}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/{DATABASE_NAME}"

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
        pwfile = self.root / ".initdb-password"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(self.password + "\n")
        _give_to_service_user(pwfile)
        argv = _as_service_user(
            [
                str(self._bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SERVICE_USER,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        )
        try:
            result = subprocess.run(argv, capture_output=True, text=True, check=False)
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise RuntimeServiceError(f"initdb failed: {result.stderr.strip()}")

    def _write_hba(self, *, trust_owner_once: bool = False) -> None:
        """pg_hba.conf: SCRAM passwords over TCP; `trust_owner_once` only while a pre-password cluster gets one."""
        method = "trust" if trust_owner_once else "scram-sha-256"
        user = SERVICE_USER if trust_owner_once else "all"
        path = self.data_dir / "pg_hba.conf"
        path.write_text(
            "# ioc embedded runtime: rewritten at every start. Passwords (SCRAM) over TCP only;\n"
            "# no trust, no unix socket, no replication connections.\n"
            f"host    all    {user}    127.0.0.1/32    {method}\n"
            f"host    all    {user}    ::1/128         {method}\n",
            encoding="utf-8",
        )
        _give_to_service_user(path)

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
            "password_encryption = 'scram-sha-256'\n"
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
        _give_to_service_user(path)

    def pid_from_file(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text(encoding="utf-8").split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return None

    def running(self) -> bool:
        pid = self.pid_from_file()
        return pid is not None and Path(f"/proc/{pid}").exists()

    def attach(self) -> None:
        lines = (self.data_dir / "postmaster.pid").read_text(encoding="utf-8").split("\n")
        self.port = int(lines[3])  # postmaster.pid: pid, data dir, start time, port, …
        if not self.secret_file.exists() or not port_open(self.port):
            raise RuntimeServiceError(f"PostgreSQL in {self.data_dir} does not answer yet")

    def start(self) -> None:
        adopt = False
        if not (self.data_dir / "PG_VERSION").exists():
            self._init_cluster()
        else:
            if (self.data_dir / "postmaster.pid").exists() and self._pg_ctl("status", check=False).returncode == 0:
                # We hold the owner lock, so whoever started it is gone: stop it and start our own.
                _LOGGER.warning("stopping a PostgreSQL left running by a process that is gone (%s)", self.data_dir)
                self._pg_ctl("-w", "-m", "fast", "stop", check=False)
            adopt = not self.secret_file.exists()  # made before passwords: give the role one now
        self._write_settings()
        self._write_hba(trust_owner_once=adopt)
        self._start_server()
        if adopt:
            self._set_password()
            self._write_hba()
            self._pg_ctl("reload")
        self._ensure_database()
        _LOGGER.info("embedded PostgreSQL on port %s (%s)", self.port, self.data_dir)

    def _start_server(self) -> None:
        self._pg_ctl("-w", "-t", str(int(START_TIMEOUT_S)), "-l", str(self.log_file), "-o", f"-p {self.port}", "start")

    def restart(self) -> None:
        """Start the server again after it died (crash recovery runs); the cluster and its settings stay."""
        self._write_hba()
        self._start_server()

    def _psql(self, database: str, command: str) -> str:
        argv = [str(self._bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", SERVICE_USER]
        env = {**os.environ, "PGPASSWORD": self.password}
        return subprocess.run(
            [*argv, "-d", database, "-v", "ON_ERROR_STOP=1", "-tAc", command],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout.strip()

    def _set_password(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=SERVICE_USER, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(SERVICE_USER), sql.Literal(self.password))
            )

    def _ensure_database(self) -> None:
        exists = self._psql("postgres", f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}'")
        if exists != "1":
            self._psql("postgres", f"CREATE DATABASE {DATABASE_NAME}")

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


def acl_plugin() -> Path:
    """The `ioc_acl` Mosquitto plugin, built from deploy/mosquitto/ioc_acl.c into .runtime/plugins on first use
    (one build per version of the source; scripts/setup.sh installs the compiler and Mosquitto's headers)."""
    source = ACL_PLUGIN_SOURCE.read_bytes()
    target = ACL_PLUGIN_CACHE / f"ioc_acl-{hashlib.sha256(source).hexdigest()[:12]}.so"
    if target.exists():
        return target
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or not Path("/usr/include/mosquitto_broker.h").exists():
        raise RuntimeServiceError(
            "building the broker's ACL plugin needs a C compiler and Mosquitto's headers: run scripts/setup.sh"
        )
    ACL_PLUGIN_CACHE.mkdir(parents=True, exist_ok=True)
    building = target.with_name(f".{target.name}.{os.getpid()}")
    result = subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-o", str(building), str(ACL_PLUGIN_SOURCE)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeServiceError(f"building {ACL_PLUGIN_SOURCE.name} failed: {result.stderr.strip()}")
    building.chmod(0o755)
    building.replace(target)  # atomic: concurrent builders agree
    return target


class EmbeddedMosquitto(_EmbeddedService):
    """A private Mosquitto 2 broker with persistence on; `with EmbeddedMosquitto(dir) as mq: mq.url`.

    `extra_config` lines are appended to the generated config. With `auth=True` nobody connects anonymously: the
    password file and the `ioc_acl` plugin's options come from `devices.access` (deny by default); the center's
    accounts (`devices.access.CENTER_ACCOUNTS`) get passwords generated once into `<user>.secret` (mode 0600).
    With `tls=True` an mqtts listener on `tls_port` uses the CA made at first start (`embedded.tls`) or
    `ca_cert`; `require_client_cert` makes devices present a certificate signed by it as well.
    """

    name = "Mosquitto"

    def __init__(
        self,
        root: Path,
        *,
        port: int | None = None,
        extra_config: tuple[str, ...] = (),
        auth: bool = False,
        tls: bool = False,
        tls_port: int | None = None,
        plain: bool = True,
        bind: str = "127.0.0.1",
        tls_hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
        ca_cert: Path | None = None,
        require_client_cert: bool = False,
        plugin: Path | None = None,
        accounts: dict[str, str] | None = None,
    ) -> None:
        super().__init__(root)
        self.port = port or find_free_port()
        self.tls_port = (tls_port or find_free_port()) if tls else None
        self.config_file = self.root / "mosquitto.conf"
        self.log_file = self.root / "mosquitto.log"
        self.password_file = self.root / "passwd"
        self.acl_file = self.root / "acl"  # read by nothing but `ioc bench access`'s comparison
        self.ports_file = self.root / "ports.json"
        self.extra_config = extra_config
        self.auth = auth
        self.plain = plain
        self.bind = bind
        self.tls_hosts = tls_hosts
        self.ca_cert = ca_cert
        self.require_client_cert = require_client_cert
        self.tls_files: TlsFiles | None = None
        self._plugin = plugin
        self._given_accounts = accounts or {}
        self._process: subprocess.Popen[bytes] | None = None

    def account_password(self, username: str) -> str:
        """A center account's broker password: given by the operator, or generated on first use (mode 0600)."""
        if username in self._given_accounts:
            return self._given_accounts[username]
        return read_or_create_secret(self.root / f"{username}.secret")

    def accounts(self) -> dict[str, str]:
        from devices.access import CENTER_ACCOUNTS

        return {username: self.account_password(username) for username in CENTER_ACCOUNTS.values()}

    @property
    def center_password(self) -> str:
        """The admin account's password (operator tools, tests, benchmarks)."""
        return self.account_password(CENTER_MQTT_USERNAME)

    def _url(self, username: str | None, *, tls: bool = False) -> str:
        """The plain listener's URL, or the TLS one's when asked or when the plain listener is off (the client
        then needs the broker's CA: SSL_CERT_FILE, as the compose stack sets it)."""
        tls = tls or not self.plain
        scheme, port = ("mqtts", self.tls_port) if tls else ("mqtt", self.port)
        try:
            host = "127.0.0.1" if ipaddress.ip_address(self.bind).is_unspecified else self.bind
        except ValueError:  # a host name
            host = self.bind
        if username is None:
            return f"{scheme}://{host}:{port}"
        return f"{scheme}://{username}:{quote(self.account_password(username), safe='')}@{host}:{port}"

    @property
    def url(self) -> str:
        """Where operator tools connect: the admin account when `auth` is on."""
        return self._url(CENTER_MQTT_USERNAME if self.auth else None)

    def role_url(self, role: str) -> str:
        """Where one part of the center connects, with the least-rights account of its role."""
        from devices.access import CENTER_ACCOUNTS

        if not self.auth:
            return self.url
        return self._url(CENTER_ACCOUNTS[role])  # type: ignore[index]

    @property
    def device_url(self) -> str:
        """The broker's plain address without credentials (devices bring their own)."""
        return self._url(None)

    @property
    def device_tls_url(self) -> str:
        if self.tls_port is None:
            raise RuntimeServiceError("this broker has no TLS listener")
        return self._url(None, tls=True)

    def access_target(self) -> BrokerAccessTarget:
        """Where `devices.access` writes this broker's password file and how it reloads it."""
        from devices.access import BrokerAccessTarget

        return BrokerAccessTarget(password_file=self.password_file, accounts=self.accounts(), reload=self.reload)

    def _write_access_files(self) -> None:
        """Only the center's accounts may connect until the registry is synced; later starts keep the devices."""
        from devices.access import write_access_files

        if self.password_file.exists():
            return  # the registry sync of the center that starts now rewrites it
        self.password_file.touch(mode=0o600)
        _give_to_service_user(self.password_file)
        write_access_files(self.access_target(), [])

    def _tls_lines(self) -> list[str]:
        from embedded.tls import ensure_broker_tls

        self.tls_files = files = ensure_broker_tls(self.root / "tls", hosts=self.tls_hosts, ca_cert=self.ca_cert)
        _give_to_service_user(files.server_key, files.server_cert)
        return [
            f"listener {self.tls_port} {self.bind}",
            f"cafile {files.ca_cert}",
            f"certfile {files.server_cert}",
            f"keyfile {files.server_key}",
            "tls_version tlsv1.2",
            f"require_certificate {'true' if self.require_client_cert else 'false'}",
        ]

    def _write_config(self) -> None:
        from devices.access import render_plugin_config

        _own_dir(self.root)
        if self.auth:
            self._write_access_files()
            plugin = self._plugin or acl_plugin()
            access = [
                "per_listener_settings false",
                "allow_anonymous false",
                f"password_file {self.password_file}",
                *render_plugin_config(plugin),
            ]
        else:
            access = ["allow_anonymous true"]
        listeners = [f"listener {self.port} {self.bind}"] if self.plain else []
        if self.tls_port is not None:
            listeners += self._tls_lines()
        if not listeners:
            raise RuntimeServiceError("a broker needs a listener: enable the plain or the TLS one")
        lines = [
            *access,
            "persistence true",
            f"persistence_location {self.root}/",
            # Sessions, subscriptions and queued messages reach the disk within 5 s: a broker killed (SIGKILL) and
            # restarted by the supervisor finds ingest's subscription again.
            "autosave_interval 5",
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
            *listeners,
        ]
        self.config_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        _give_to_service_user(self.config_file, self.log_file)

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
        with contextlib.suppress(ProcessLookupError, PermissionError, FileNotFoundError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"mosquitto" in cmdline and str(self.config_file).encode() in cmdline:
                _LOGGER.warning("stopping a Mosquitto left running on %s (pid %s)", self.root, pid)
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + STOP_TIMEOUT_S
                while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
        self._pid_file.unlink(missing_ok=True)

    def pid_from_file(self) -> int | None:
        """The running broker's pid as recorded in its folder (by whichever process owns it)."""
        try:
            return int(self._pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def running(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        return port_open(self.port)

    def attach(self) -> None:
        ports = json.loads(self.ports_file.read_text(encoding="utf-8"))
        self.port = int(ports["port"])
        self.tls_port = ports.get("tls_port")
        if not port_open(int(self.tls_port or self.port) if not self.plain else self.port):
            raise RuntimeServiceError(f"Mosquitto in {self.root} does not answer yet")

    def start(self) -> None:
        self._stop_orphan()
        self._write_config()
        self._launch()
        self.ports_file.write_text(json.dumps({"port": self.port, "tls_port": self.tls_port}), encoding="utf-8")
        _LOGGER.info("embedded Mosquitto on port %s%s", self.port, f" (mqtts {self.tls_port})" if self.tls_port else "")

    def restart(self) -> None:
        """Start the broker again after it died; its persistence file brings back sessions and queued messages."""
        self._process = None
        self._launch()

    def _launch(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise RuntimeServiceError("mosquitto not found: run `make setup` (scripts/setup.sh) first")
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
        probe = self.port if self.plain else int(self.tls_port or 0)
        while not port_open(probe):
            if self._process.poll() is not None:
                raise RuntimeServiceError(f"mosquitto exited with {self._process.returncode}; see {self.log_file}")
            if time.monotonic() > deadline:
                raise RuntimeServiceError(f"mosquitto did not listen on {probe}; see {self.log_file}")
            time.sleep(0.05)

    def reload(self) -> None:
        """Re-read the password file (SIGHUP); an attached process signals the owner's broker by its pid file."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGHUP)
            return
        if self.attached:
            with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
                os.kill(int(self._pid_file.read_text()), signal.SIGHUP)

    def stop(self) -> None:
        """Stop cleanly: SIGTERM makes Mosquitto save its persistence file first."""
        if self._process is None:
            return
        end_process(self._process, timeout_s=STOP_TIMEOUT_S)
        self._process = None
        self._pid_file.unlink(missing_ok=True)
