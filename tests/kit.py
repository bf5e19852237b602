"""Running the conformance kit as its users do: the installed `todo-conformance`
command against a base URL, its report read back; and a recording proxy to stand
between the kit and a target."""

import json
import re
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import environment
import psycopg2
from ports import free_port

from service.db import libpq_url

KIT = Path(sys.executable).with_name("todo-conformance")
MARK = "[todo-conformance "


@dataclass
class KitRun:
    status: int
    output: str
    report_dir: Path

    @property
    def report(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.report_dir / "report.json").read_text())
        return loaded

    def outcomes(self) -> dict[str, str]:
        return {r["id"]: r["outcome"] for r in self.report["requirements"]}

    def failing(self) -> set[str]:
        return {i for i, outcome in self.outcomes().items() if outcome == "fail"}

    def erring(self) -> set[str]:
        return {i for i, outcome in self.outcomes().items() if outcome == "error"}

    def requirement(self, rid: str) -> dict[str, Any]:
        found: dict[str, Any] = next(r for r in self.report["requirements"] if r["id"] == rid)
        return found

    def todos_left(self, database_url: str) -> int:
        """Todos in that database that this run made: its run id in the title, or one of
        its users as the owner. Counted in PostgreSQL, not taken from the report."""
        users = [u for u in self.report["users"].values() if u]
        mark = f"{MARK}{self.report['run_id']}]%"
        with psycopg2.connect(libpq_url(database_url)) as conn, conn.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM todos WHERE title LIKE %s OR user_id::text = ANY(%s)",
                (mark, users),
            )
            (count,) = cursor.fetchone()
        conn.close()
        return int(count)

    def others(self, database_url: str) -> tuple[int, int]:
        """The todos in that database this run did not make (neither its run id in the
        title nor one of its users as the owner), and how many of them are completed."""
        users = [u for u in self.report["users"].values() if u]
        mark = f"{MARK}{self.report['run_id']}]%"
        with psycopg2.connect(libpq_url(database_url)) as conn, conn.cursor() as cursor:
            cursor.execute(
                "SELECT count(*), count(*) FILTER (WHERE is_completed) FROM todos"
                " WHERE NOT (title LIKE %s OR user_id::text = ANY(%s))",
                (mark, users),
            )
            (count, completed) = cursor.fetchone()
        conn.close()
        return int(count), int(completed)


def kit_command(base_url: str, report_dir: Path, *args: str) -> list[str]:
    return [str(KIT), "run", "--base-url", base_url, "--report-dir", str(report_dir), *args]


def run_kit(base_url: str, report_dir: Path, *args: str, timeout: float = 600) -> KitRun:
    done = subprocess.run(
        kit_command(base_url, report_dir, *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=environment.child(),
    )
    return KitRun(done.returncode, done.stdout + done.stderr, report_dir)


class RecordingProxy:
    """Stands between the kit and `target` on the wire: each request is passed on as the
    bytes it came in, over a connection of its own, and its method is kept in `seen`."""

    def __init__(self, target: str, prefix: str = "") -> None:
        """`prefix`: the target is reached under this path (/staging/api/v1/todos), as
        behind a proxy that serves several deployments; the proxy takes it off."""
        parts = urlsplit(target)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.prefix = prefix.encode()
        self.seen: list[str] = []
        self.port = free_port()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._running = True
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix.decode()}"

    def _accept(self) -> None:
        while self._running:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            stream = client.makefile("rb")
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = stream.readline()
                    if not line:
                        return
                    head += line
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                body = stream.read(int(length[1])) if length else b""
                self.seen.append(head.split(b" ", 1)[0].decode("latin-1"))
                method, target, rest = head.split(b" ", 2)
                if not target.startswith(self.prefix + b"/"):
                    client.sendall(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                    return
                head = b" ".join((method, target.removeprefix(self.prefix), rest))
                # One upstream connection per request, closed after its answer.
                head = re.sub(rb"(?im)^connection:[^\r\n]*\r\n", b"", head)
                head = head[:-2] + b"Connection: close\r\n\r\n"
                with socket.create_connection(self.upstream) as upstream:
                    upstream.sendall(head + body)
                    answer = b""
                    while chunk := upstream.recv(65536):
                        answer += chunk
                client.sendall(answer)
                return

    def stop(self) -> None:
        self._running = False
        self._server.close()
