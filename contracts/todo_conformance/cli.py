"""`todo-conformance run --base-url URL`: the contract checked from outside, a result
for every requirement id, and reports a CI system can read."""

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import yaml

from todo_conformance import report
from todo_conformance.checks import Options
from todo_conformance.fuzz import Fuzzer
from todo_conformance.runner import Run, execute
from todo_conformance.target import Target
from todo_conformance.users import User, better_auth_users, command_users, header_users

_stop = {"signal": 0}


def _on_signal(signum: int, frame: FrameType | None) -> None:
    # The first signal stops the checks at the next step and lets cleanup run; the
    # cleanup itself is not interrupted by a second one of the same kind.
    if not _stop["signal"]:
        _stop["signal"] = signum
        raise KeyboardInterrupt


def _expected(path: Path | None) -> dict[str, str]:
    """--expected-failures: a YAML list of {id, reason}."""
    if path is None:
        return {}
    listed = yaml.safe_load(path.read_text()) or []
    if isinstance(listed, dict):
        listed = listed.get("expected_failures", [])
    expected = {}
    for entry in listed:
        if not isinstance(entry, dict) or "id" not in entry or not entry.get("reason"):
            sys.exit(f"todo-conformance: {path}: each entry needs an id and a reason")
        expected[str(entry["id"])] = str(entry["reason"])
    return expected


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="todo-conformance", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="check a deployment of the contract")
    run.add_argument(
        "--base-url",
        default=os.environ.get("TODO_CONFORMANCE_BASE_URL"),
        help="the deployment (or TODO_CONFORMANCE_BASE_URL)",
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
        help="bearer mode: sign fresh users up with the Better Auth server at URL",
    )
    run.add_argument("--origin", help="a browser origin the deployment lists for CORS")
    run.add_argument("--quota", type=int, help="the deployment's TODO_MAX_TODOS_PER_USER")
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
    run.add_argument("--only", help="comma-separated requirement ids to check (default: all)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if not args.base_url:
        sys.exit("todo-conformance: --base-url (or TODO_CONFORMANCE_BASE_URL) names the deployment")
    if args.token_command and args.better_auth:
        sys.exit("todo-conformance: --token-command or --better-auth, not both")
    bearer = bool(args.token_command or args.better_auth)
    options = Options(
        mode="bearer" if bearer else "header",
        read_only=args.read_only,
        origin=args.origin,
        quota=args.quota,
        metrics_url=args.metrics_url,
    )

    def users(run_id: str) -> list[User]:
        if args.token_command:
            return command_users(args.token_command)
        if args.better_auth:
            return better_auth_users(args.better_auth, run_id)
        return header_users()

    run = Run(
        base_url=args.base_url,
        options=options,
        users=users,
        contract_file=args.contract.read_bytes() if args.contract else None,
        fuzz=Fuzzer(args.fuzz_examples, args.seed, args.max_rps) if args.fuzz_examples else None,
        expected=_expected(args.expected_failures),
        only=set(args.only.split(",")) if args.only else None,
    )
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _on_signal)
    target = Target(args.base_url, read_only=args.read_only, max_rps=args.max_rps)
    try:
        outcome = execute(run, target, lambda: bool(_stop["signal"]))
    finally:
        target.close()
    print(report.summary(outcome))
    if args.report_dir:
        report.write(outcome, args.report_dir)
    if _stop["signal"]:
        sys.exit(128 + _stop["signal"])
    sys.exit(outcome.exit_status)
