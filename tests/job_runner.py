"""The kit's jobs (tests/kit_jobs.py) in a process of their own, beside the pytest
processes whose tests read them:

    python tests/job_runner.py DIRECTORY

DIRECTORY/request.json names the jobs and the test modules that read them (importing
them registers the jobs, as it did in pytest). This process starts what they check (its
own PostgreSQL, or TEST_DATABASE_URL's server; Better Auth; `serve`; the fleet),
describes it in kits.json, runs the jobs several at once and writes each one's result,
or its traceback, to results/ as it ends. It keeps what it started up for the tests
that read it until DIRECTORY/stop appears or the pytest process that began the run has
gone, then stops it all and leaves DIRECTORY/stopped. Nothing here changes its
environment, so every child gets the one it was given."""

import contextlib
import importlib
import json
import os
import pickle
import signal
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import environment
import psutil
from better_auth import BetterAuth
from databases import THROWAWAY, Databases
from kit_jobs import AT_ONCE, JOBS, OWNER, Job, Kits, Scratch, alive, result_file
from ports import free_port
from run_logs import RunLogs
from whole_run import WholeRun

from service.embedded import EmbeddedPostgres


def _write(path: Path, outcome: str, value: Any) -> None:
    try:
        data = pickle.dumps((outcome, value))
    except Exception:
        data = pickle.dumps(("error", f"its result cannot be kept:\n{traceback.format_exc()}"))
    written = path.with_suffix(".tmp")
    written.write_bytes(data)
    written.rename(path)


def _run(kits: Kits, name: str, job: Job, directory: Path) -> None:
    try:
        value = job.run(kits)
    except BaseException:
        _write(result_file(directory, name), "error", traceback.format_exc())
    else:
        _write(result_file(directory, name), "ok", value)


def _ended(directory: Path, owner: int) -> bool:
    return (directory / "stop").exists() or not alive(owner)


def _server(stack: contextlib.ExitStack, scratch: Scratch) -> str:
    if url := os.environ.get("TEST_DATABASE_URL"):
        return url
    server = EmbeddedPostgres(scratch.mktemp("postgres"), port=free_port(), settings=THROWAWAY)
    url = server.start()
    stack.callback(server.stop)
    return url


def main() -> None:
    directory = Path(sys.argv[1])
    environment.capture()
    owner = int(os.environ[OWNER])
    request = json.loads((directory / "request.json").read_text())
    (directory / "results").mkdir(exist_ok=True)
    # SIGTERM (the owner's, or a person's) stops it as a stop file does.
    signal.signal(signal.SIGTERM, lambda signum, frame: (directory / "stop").touch())
    with contextlib.ExitStack() as stack:
        try:
            for module in request["modules"]:
                importlib.import_module(module)
            jobs = {name: JOBS[name] for name in request["jobs"]}
            scratch = Scratch(directory / "scratch")
            url = _server(stack, scratch)
            logs = RunLogs(WholeRun())
            logs.database_url(url)
            databases = Databases(url)
            if os.environ.get("TEST_DATABASE_URL"):
                # A server of the run's own goes whole; a given one keeps no database
                # of this run's.
                stack.callback(databases.drop_all)
            auth = None
            if any(j.better_auth or "jwt" in j.services for j in jobs.values()):
                auth = BetterAuth(scratch.mktemp("better-auth"), databases.clone("better-auth"))
                stack.callback(auth.stop)
            kits = Kits(jobs, scratch, databases, logs, auth)
            stack.callback(kits.stop)
            kits.start()
            described = kits.described()
        except BaseException:
            failed = traceback.format_exc()
            print(failed, file=sys.stderr)
            (directory / "kits.json").write_text(json.dumps({"error": failed}))
            for name in request["jobs"]:
                _write(result_file(directory, name), "error", f"nothing was started:\n{failed}")
            raise
        (directory / "kits.json").write_text(json.dumps(described))
        pool = ThreadPoolExecutor(AT_ONCE, thread_name_prefix="kit-job")
        for name, j in jobs.items():
            pool.submit(_run, kits, name, j, directory)
        while not _ended(directory, owner):
            time.sleep(0.5)
        pool.shutdown(wait=False, cancel_futures=True)


if __name__ == "__main__":
    try:
        main()
    finally:
        # What a job still running had started (a kit's run, its proxy's peer) ends too.
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        (Path(sys.argv[1]) / "stopped").touch()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
