"""`todo-conformance run --base-url URL`: the contract checked from outside, a result
for every requirement id, and reports a CI system can read. `todo-conformance ids`
lists the ids; `--version` says which kit and which contract versions it knows.

A mistake in how it is called is refused before anything is sent: exit 2 and one line.
Otherwise the exit status is 0 when nothing failed, erred or was left behind, 1 when
something did, and 130 when the run was interrupted (SIGINT or SIGTERM)."""

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import NoReturn
from urllib.parse import urlsplit

import yaml

from todo_conformance import report
from todo_conformance.catalogue import Contract, load_yaml, requirements
from todo_conformance.checks import Options
from todo_conformance.checks.limits import MOST_TO_SPEND
from todo_conformance.fuzz import Fuzzer
from todo_conformance.progress import Progress
from todo_conformance.runner import Run, Stop, execute, known_versions
from todo_conformance.target import Target, Unreachable
from todo_conformance.users import (
    Accounts,
    User,
    better_auth_base,
    better_auth_users,
    command_users,
    header_users,
)


class Mistake(Exception):
    """How the kit was called cannot work: said in one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise Mistake(message)


def _version() -> str:
    versions = ", ".join(known_versions())
    return f"todo-conformance {metadata.version('todo-conformance')} (contract versions {versions})"


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="todo-conformance", description=__doc__)
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands.add_parser("ids", help="list every requirement id the kit answers for")
    run = commands.add_parser("run", help="check a deployment of the contract")
    run.add_argument(
        "--base-url",
        default=os.environ.get("TODO_CONFORMANCE_BASE_URL"),
        help="the deployment, http(s), with a path prefix if it has one"
        " (or TODO_CONFORMANCE_BASE_URL)",
    )
    run.add_argument(
        "--contract",
        type=Path,
        help="the contract to check against (default: the one served at /openapi.yaml)",
    )
    run.add_argument(
        "--token-command",
        help="bearer mode: a command that, given a user name, prints that user's token",
    )
    run.add_argument(
        "--better-auth",
        metavar="URL",
        help="bearer mode: sign fresh users up with the Better Auth server at URL (and delete"
        " them at the end, where it allows delete-user)",
    )
    run.add_argument("--origin", help="a browser origin the deployment lists for CORS")
    run.add_argument(
        "--quota",
        type=int,
        help="the deployment's TODO_MAX_TODOS_PER_USER, for FR-151, which fills a user up to"
        f" it: at most {MOST_TO_SPEND:,}",
    )
    run.add_argument(
        "--metrics-url", help="the deployment's metrics listener, e.g. http://host:9100/metrics"
    )
    run.add_argument("--read-only", action="store_true", help="send only GET, HEAD and OPTIONS")
    run.add_argument("--max-rps", type=float, help="never send more requests a second than this")
    run.add_argument(
        "--report-dir",
        type=Path,
        help="write junit.xml, report.json, report.md and report.html here",
    )
    run.add_argument("--expected-failures", type=Path, help="YAML: known failures, [{id, reason}]")
    run.add_argument(
        "--fuzz-examples",
        type=int,
        default=30,
        help="schemathesis examples per operation (0: no fuzzing)",
    )
    run.add_argument(
        "--seed", type=int, default=20261201, help="the fuzzer's seed, for a run that replays"
    )
    run.add_argument(
        "--only", help="comma-separated requirement ids to check (default: all; see `ids`)"
    )
    return parser


def _known() -> set[str]:
    return {r.id for r in requirements()}


def _unknown(ids: set[str], where: str) -> None:
    unknown = ids - _known()
    if unknown:
        known = ", ".join(r.id for r in requirements())
        raise Mistake(f"{where}: no such id {', '.join(sorted(unknown))} (known: {known})")


def _only(given: str | None) -> set[str] | None:
    if given is None:
        return None
    ids = {i.strip() for i in given.split(",") if i.strip()}
    if not ids:
        raise Mistake("--only: no id given")
    _unknown(ids, "--only")
    return ids


def _expected(path: Path | None) -> dict[str, str]:
    """--expected-failures: a YAML list of {id, reason} (or {expected_failures: [...]})."""
    if path is None:
        return {}
    try:
        listed = load_yaml(path.read_text())
    except OSError as error:
        raise Mistake(f"--expected-failures {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise Mistake(
            f"--expected-failures {path}: not YAML ({error.__class__.__name__})"
        ) from None
    if isinstance(listed, dict):
        listed = listed.get("expected_failures")
    if not isinstance(listed, list):
        raise Mistake(f"--expected-failures {path}: not a list of {{id, reason}}")
    expected = {}
    for entry in listed:
        if not isinstance(entry, dict) or not entry.get("id") or not entry.get("reason"):
            raise Mistake(f"--expected-failures {path}: each entry needs an id and a reason")
        expected[str(entry["id"])] = str(entry["reason"])
    _unknown(set(expected), f"--expected-failures {path}")
    return expected


def _http_url(value: str | None, option: str) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise Mistake(f"{option} {value!r} is not an http(s) URL")
    return value


def _contract(args: argparse.Namespace, target: Target) -> Contract | None:
    """The contract to check against; None when the target did not answer at all."""
    if args.contract is not None:
        try:
            raw = args.contract.read_bytes()
        except OSError as error:
            raise Mistake(f"--contract {args.contract}: {error.strerror}") from None
        try:
            return Contract.parse(raw, "--contract")
        except ValueError as error:
            raise Mistake(f"--contract {args.contract}: {error}") from None
    url = target.url("/openapi.yaml")
    try:
        answer = target.request("GET", "/openapi.yaml")
    except Unreachable:
        return None
    try:
        return Contract.parse(answer.body, url)
    except ValueError:
        kind = answer.header("content-type") or "no content type"
        raise Mistake(
            f"{url} answered {answer.status} ({kind}), not an OpenAPI document: is"
            " --base-url a deployment of the todo contract, with its path prefix?"
        ) from None


def _ids() -> None:
    for requirement in requirements():
        print(f"{requirement.id}\t{requirement.text}")


def main(argv: Sequence[str] | None = None) -> None:
    try:
        status = _main(argv)
    except Mistake as mistake:
        print(f"todo-conformance: {mistake}", file=sys.stderr)
        status = 2
    sys.exit(status)


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "ids":
        _ids()
        return 0
    if not args.base_url:
        raise Mistake("--base-url (or TODO_CONFORMANCE_BASE_URL) names the deployment")
    base_url = _http_url(args.base_url, "--base-url") or ""
    _http_url(args.better_auth, "--better-auth")
    _http_url(args.metrics_url, "--metrics-url")
    if args.token_command and args.better_auth:
        raise Mistake("--token-command or --better-auth, not both")
    if args.quota is not None and not 1 <= args.quota <= MOST_TO_SPEND:
        raise Mistake(
            f"--quota {args.quota}: FR-151 fills a user up to the quota, at most"
            f" {MOST_TO_SPEND:,} todos; leave --quota out to skip it"
        )
    only, expected = _only(args.only), _expected(args.expected_failures)
    bearer = bool(args.token_command or args.better_auth)
    options = Options(
        mode="bearer" if bearer else "header",
        read_only=args.read_only,
        origin=args.origin,
        quota=args.quota,
        metrics_url=args.metrics_url,
    )

    accounts = Accounts(better_auth_base(args.better_auth)) if args.better_auth else None

    def users(run_id: str) -> list[User]:
        if args.token_command:
            return command_users(args.token_command)
        if accounts is not None:
            return better_auth_users(accounts, run_id)
        return header_users()

    run = Run(
        base_url=base_url,
        options=options,
        users=users,
        fuzz=Fuzzer(args.fuzz_examples, args.seed, args.max_rps) if args.fuzz_examples else None,
        expected=expected,
        only=only,
        accounts=accounts,
    )
    target = Target(base_url, read_only=args.read_only, max_rps=args.max_rps)
    stop = Stop()

    def heard(signum: int, frame: FrameType | None) -> None:
        stop.heard(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, heard)
    try:
        try:
            contract = _contract(args, target)
        except KeyboardInterrupt:
            contract = None
        progress = Progress(lambda: target.sent)
        progress.phase(f"checking {base_url} ({options.mode} mode)")
        outcome = execute(run, contract, target, stop, progress)
    finally:
        target.close()
    progress.stop()
    written = report.write(outcome, args.report_dir) if args.report_dir else []
    print(report.summary(outcome, colour=progress.colour), flush=True)
    progress.say(report.last_line(outcome, written, colour=progress.colour))
    return outcome.exit_status
