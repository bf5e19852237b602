"""Every command block of the README (```sh), run as written, from the clone's root, as a
newcomer would paste it. Only the addresses change, for free ports on this machine:

- the deployment (`https://todo-staging.example.com`, `localhost:8000`,
  `127.0.0.1:8000`) is `todo-service serve` in header mode, except in a command that
  names `--better-auth`, a jwt staging: there it is the service `npm run web:serve`
  starts, in `jwt` mode trusting that example's real Better Auth, which stands for
  `https://app-staging.example.com`; `todo-service mcp` without `--base-url` is given
  the header-mode service's (its default is port 8000);
- `$ALICE` is a user id, as the reader's own would be.

In a block written as a terminal (`$ ` before each command), the commands run and the
rest, their output as shown, is not compared. A command naming `nox -s NAME` is not run
but checked against the noxfile's sessions: each session installs an environment of its
own (minutes), `nox -s tests` is the first thing CI runs, and `nox -s serve` is the
header-mode service here, `todo-service serve` as the README's next line says.

After a block that ran the conformance kit, its report must say it passed with nothing
left: no todo of its run in the service's database, and every Better Auth account it
made deleted (this Better Auth allows delete-user).

The kit runs in full here, as the README writes it (about a minute each mode); this is
`nox -s readme`, beside `nox -s tests` in CI, not inside it."""

import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg2
import pytest
from conftest import REPO

from service.db import libpq_url
from service.embedded import free_port

BIN = Path(sys.executable).parent
TODO_SERVICE = str(BIN / "todo-service")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
STAGING = ("https://todo-staging.example.com", "localhost:8000", "127.0.0.1:8000")
AUTH = "https://app-staging.example.com"
NOX_SESSION = re.compile(r"\bnox -s ([\w-]+)")
# A block's commands together may take this long (the kit's full run is most of it).
BLOCK_SECONDS = 900


@dataclass(frozen=True)
class Block:
    line: int
    commands: list[str]

    def __str__(self) -> str:
        return f"README.md:{self.line}"


def _commands(text: str) -> list[str]:
    """The block's commands, each with its continuation lines: every line, or in a
    terminal transcript only those after `$ `."""
    lines = text.splitlines()
    transcript = any(line.startswith("$ ") for line in lines)
    commands: list[str] = []
    continued = False
    for line in lines:
        if continued:
            commands[-1] += "\n" + line
        elif transcript and line.startswith("$ "):
            commands.append(line[2:])
        elif not transcript and line.strip():
            commands.append(line)
        continued = line.endswith("\\") and bool(commands)
    return commands


def _blocks() -> list[Block]:
    readme = (REPO / "README.md").read_text()
    return [
        Block(readme.count("\n", 0, found.start()) + 1, _commands(found[2]))
        for found in FENCE.finditer(readme)
        if found[1] in ("sh", "bash", "shell", "console")
    ]


def _sessions() -> set[str]:
    """The noxfile's session names: each @nox.session function, or its name=."""
    names = set()
    for node in ast.walk(ast.parse((REPO / "noxfile.py").read_text())):
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and ast.unparse(decorator.func) == "nox.session":
                    named = [k.value for k in decorator.keywords if k.arg == "name"]
                    names.add(ast.literal_eval(named[0]) if named else node.name)
    return names


def _clean_env(**extra: str) -> dict[str, str]:
    """This machine's environment, with none of the service's settings a test set, and
    this session's programs first on PATH (as an activated virtual environment's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TODO_", "NEON_"))}
    return env | {"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"} | extra


def _wait(url: str, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 180
    while True:
        assert process.poll() is None, f"{what} exited:\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{what} was not ready:\n{log.read_text()[-3000:]}"
        time.sleep(0.3)


@dataclass
class Deployment:
    api: str
    data_dir: Path
    auth: str | None = None

    def database(self) -> str:
        done = subprocess.run(
            [TODO_SERVICE, "db-url"],
            env=_clean_env(TODO_DATA_DIR=str(self.data_dir)),
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()


@pytest.fixture(scope="module")
def header_mode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """`todo-service serve` (what `nox -s serve` runs), header mode, embedded PostgreSQL."""
    workdir = tmp_path_factory.mktemp("header")
    port, log = free_port(), workdir / "serve.log"
    env = _clean_env(TODO_DATA_DIR=str(workdir / "data"))
    with log.open("wb") as output:
        server = subprocess.Popen(
            [TODO_SERVICE, "serve", "--port", str(port)],
            cwd=workdir, env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        api = f"http://127.0.0.1:{port}"
        _wait(f"{api}/health/ready", server, "todo-service serve", log)
        yield Deployment(api, workdir / "data")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


@pytest.fixture(scope="module")
def jwt_mode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """`npm run web:serve` on free ports: the service in jwt mode and the web example's
    Better Auth, stopped as Ctrl-C stops it (SIGINT to its process group)."""
    workdir = tmp_path_factory.mktemp("jwt")
    web, api = free_port(), free_port()
    log = workdir / "web-serve.log"
    env = _clean_env(TODO_DATA_DIR=str(workdir / "data"), WEB_PORT=str(web), API_PORT=str(api))
    with log.open("wb") as output:
        stack = subprocess.Popen(
            ["npm", "run", "web:serve"], cwd=REPO, env=env, stdout=output,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deployment = Deployment(f"http://127.0.0.1:{api}", workdir / "data")
        _wait(f"{deployment.api}/health/ready", stack, "npm run web:serve", log)
        deployment.auth = f"http://127.0.0.1:{web}"
        _wait(f"{deployment.auth}/api/auth/ok", stack, "npm run web:serve", log)
        yield deployment
    finally:
        os.killpg(stack.pid, signal.SIGINT)
        stack.wait(timeout=60)


def _substituted(command: str, header: Deployment, jwt: Deployment) -> str:
    bearer = "--better-auth" in command
    target = jwt if bearer else header
    for written in STAGING:
        command = command.replace(written, target.api)
    if jwt.auth is not None:
        command = command.replace(AUTH, jwt.auth)
    given = f"todo-service mcp --base-url {header.api}"
    return re.sub(r"todo-service mcp(?! --base-url)", given, command)


def _problems(output: str) -> list[str]:
    """Lines of output that are problem details: a request the README shows failing."""
    found = []
    for line in output.splitlines():
        try:
            body = json.loads(line)
        except ValueError:
            continue
        if isinstance(body, dict) and isinstance(body.get("status"), int) and body["status"] >= 400:
            found.append(line)
    return found


def _left_behind(report: dict[str, object], deployment: Deployment) -> tuple[int, int]:
    """Todos of the run, and Better Auth accounts of the run, still in the database."""
    run_id = report["run_id"]
    with psycopg2.connect(libpq_url(deployment.database())) as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM todos WHERE title LIKE %s", (f"[todo-conformance {run_id}]%",)
        )
        (todos,) = cursor.fetchone()
        accounts = 0
        cursor.execute("SELECT to_regclass('better_auth.user') IS NOT NULL")
        if cursor.fetchone()[0]:
            cursor.execute(
                'SELECT count(*) FROM better_auth."user" WHERE email LIKE %s',
                (f"todo-conformance-{run_id}-%",),
            )
            (accounts,) = cursor.fetchone()
    conn.close()
    return int(todos), int(accounts)


BLOCKS = _blocks()


def test_the_readme_has_command_blocks() -> None:
    assert len(BLOCKS) >= 3, [str(b) for b in BLOCKS]


@pytest.mark.parametrize("block", BLOCKS, ids=str)
def test_a_readme_block_runs_as_written(
    block: Block, header_mode: Deployment, jwt_mode: Deployment, tmp_path: Path
) -> None:
    named = [s for c in block.commands for s in NOX_SESSION.findall(c)]
    assert set(named) <= _sessions(), f"{block}: no such nox session {set(named) - _sessions()}"
    runnable = [c for c in block.commands if not NOX_SESSION.search(c)]
    if not runnable:
        return
    script = "\n".join(
        ["set -euo pipefail", *(_substituted(c, header_mode, jwt_mode) for c in runnable)]
    )
    report_dir = REPO / "report"
    existed = report_dir.exists()
    env = _clean_env(ALICE=str(uuid.uuid4()))
    try:
        done = subprocess.run(
            ["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
            timeout=BLOCK_SECONDS, check=False,
        )  # fmt: skip
        said = f"{block}:\n{script}\n--- output:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        assert done.returncode == 0, said
        assert _problems(done.stdout) == [], said
        kit_report = report_dir / "report.json"
        if not existed and kit_report.exists():
            report = json.loads(kit_report.read_text())
            assert report["passed"] is True and report["cleanup"]["completed"] is True, said
            bearer = report["mode"] == "bearer"
            deployment = jwt_mode if bearer else header_mode
            assert _left_behind(report, deployment) == (0, 0), said
            if bearer:
                accounts = report["cleanup"]["accounts"]
                assert accounts["made"] >= 4 and accounts["deleted"] == accounts["made"], accounts
    finally:
        if not existed:
            shutil.rmtree(report_dir, ignore_errors=True)
