"""Runs the test suite against PostgreSQL reached the way Neon hands it out.

    python tests/profiles/neon_shaped.py direct|pooled [pytest arguments...]

direct: Debian's PostgreSQL with TLS (a throwaway certificate) and scram-sha-256,
        through `...?sslmode=require&channel_binding=require`.
pooled: the same server behind PgBouncer in transaction mode, TLS on both legs,
        through `...?sslmode=require`.

The login role is shaped like Neon's `neondb_owner`: not a superuser; CREATEROLE,
CREATEDB and BYPASSRLS; owner of the database. Non-TLS connections are refused.
"""

import glob
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from service.embedded import free_port

SYSTEM_USER = "postgres"  # Debian's server refuses root; its own user runs it
OWNER = "neondb_owner"
DATABASE = "neondb"


def _pg_bin(program: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{program}"))
    if not found:
        sys.exit("Debian's PostgreSQL server is missing: apt-get install postgresql")
    return found[-1]


def _run(*args: str) -> None:
    done = subprocess.run(
        args, user=SYSTEM_USER, capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        sys.exit(f"{Path(args[0]).name} failed:\n{done.stdout}{done.stderr}")


def _certificate(workdir: Path) -> tuple[Path, Path]:
    key, cert = workdir / "server.key", workdir / "server.crt"
    _run(
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
    )  # fmt: skip
    key.chmod(0o600)
    return key, cert


@contextmanager
def postgres(workdir: Path, key: Path, cert: Path, password: str) -> Iterator[int]:
    data, port = workdir / "data", free_port()
    _run(_pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
         "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C")  # fmt: skip
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            f"listen_addresses = '127.0.0.1'\nport = {port}\n"
            f"unix_socket_directories = '{workdir}'\nssl = on\n"
            f"ssl_cert_file = '{cert}'\nssl_key_file = '{key}'\n"
            "password_encryption = 'scram-sha-256'\nmax_connections = 400\n"
            "timezone = 'UTC'\n"
        )
    (data / "pg_hba.conf").write_text(
        "local all postgres trust\n"
        "hostssl all all 127.0.0.1/32 scram-sha-256\n"
        "host all all 0.0.0.0/0 reject\n"
    )
    _run(_pg_bin("pg_ctl"), "start", "-D", str(data), "-w", "-l", str(workdir / "postgres.log"))
    try:
        _run(_pg_bin("psql"), "-h", str(workdir), "-p", str(port), "-U", "postgres",
             "-v", "ON_ERROR_STOP=1",
             "-c", f"CREATE ROLE {OWNER} LOGIN PASSWORD '{password}'"
                   " CREATEROLE CREATEDB BYPASSRLS",
             "-c", f"CREATE DATABASE {DATABASE} OWNER {OWNER}")  # fmt: skip
        yield port
    finally:
        _run(_pg_bin("pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w")


@contextmanager
def pgbouncer(workdir: Path, key: Path, cert: Path, password: str, pg_port: int) -> Iterator[int]:
    port = free_port()
    (workdir / "userlist.txt").write_text(f'"{OWNER}" "{password}"\n')
    ini = workdir / "pgbouncer.ini"
    ini.write_text(
        f"[databases]\n{DATABASE} = host=127.0.0.1 port={pg_port} dbname={DATABASE}\n"
        # The tests' databases of their own, cloned from a template, by whatever name.
        f"* = host=127.0.0.1 port={pg_port}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        "pool_mode = transaction\n"
        f"auth_type = scram-sha-256\nauth_file = {workdir}/userlist.txt\n"
        f"client_tls_sslmode = require\nclient_tls_key_file = {key}\n"
        f"client_tls_cert_file = {cert}\nserver_tls_sslmode = require\n"
        "max_client_conn = 500\ndefault_pool_size = 40\n"
        f"logfile = {workdir}/pgbouncer.log\nadmin_users = {OWNER}\n"
    )
    process = subprocess.Popen(["pgbouncer", "--quiet", str(ini)], user=SYSTEM_USER)
    try:
        _wait_for_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_for_port(port: int) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    sys.exit(f"nothing listens on {port} after 30 s")


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in {"direct", "pooled"}:
        sys.exit(__doc__)
    profile, pytest_args = sys.argv[1], sys.argv[2:]
    for tool in ("openssl", "pgbouncer"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: apt-get install {tool}")
    workdir = Path(tempfile.mkdtemp(prefix=f"neon-{profile}-"))
    shutil.chown(workdir, SYSTEM_USER)
    password = secrets.token_urlsafe(18)
    try:
        key, cert = _certificate(workdir)
        with postgres(workdir, key, cert, password) as pg_port:
            if profile == "direct":
                url = (
                    f"postgresql://{OWNER}:{password}@localhost:{pg_port}/{DATABASE}"
                    "?sslmode=require&channel_binding=require"
                )
                return _pytest(url, pytest_args)
            with pgbouncer(workdir, key, cert, password, pg_port) as bouncer_port:
                url = (
                    f"postgresql://{OWNER}:{password}@localhost:{bouncer_port}/{DATABASE}"
                    "?sslmode=require"
                )
                return _pytest(url, pytest_args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _pytest(url: str, args: list[str]) -> int:
    print(f"neon-shaped profile: {url.split('@')[1]}", flush=True)
    env = {**os.environ, "TEST_DATABASE_URL": url}
    # The installed pytest, not `python -m`, which would put the source tree first.
    pytest = str(Path(sys.executable).with_name("pytest"))
    return subprocess.run([pytest, *args], env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
