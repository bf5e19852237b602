"""The kit's runs that more than one test module reads (tests/kit_jobs.py's jobs):
this service in header and jwt mode, with limits, against the 1.0 contract, read-only,
interrupted, with expected failures, and against each broken implementation. A module
whose tests name one imports this module, so that any test file runs alone.

How deep the runs go: `nox -s tests` runs a shallower sweep of some, to keep within its
time; `nox -s kit-depth` (in .ci/run, on every submission) runs the same tests with
KIT_DEPTH=full, each of those runs at least as deep as the suite ran it before it was
shortened. docs/testing.md lists each pair."""

import os
import signal
import subprocess
import uuid
from functools import partial

import environment
import one_off
import psycopg2
from conftest import REPO, read_yaml
from implementations import SHIPPED
from kit_jobs import JOBS, ORIGIN, Kits, job
from todo_conformance.checks import REGISTRY
from waits import until

from kit import MARK, KitRun, RecordingProxy, kit_command, run_kit
from service.db import libpq_url

FULL_DEPTH = os.environ.get("KIT_DEPTH") == "full"

CATALOGUE = read_yaml(REPO / "contracts" / "requirements.yaml")["requirements"]
EVERY_ID = [r["id"] for r in CATALOGUE]
# SC-002's check makes and deletes a thousand todos, most of a run's requests, and reads
# no identity: in the shallow sweep the header-mode run alone proves it, and the other
# runs leave it out (--only); at full depth every run checks it.
ALL_BUT_THE_THOUSAND = [i for i in EVERY_ID if i != "SC-002"]
SWEPT = EVERY_ID if FULL_DEPTH else ALL_BUT_THE_THOUSAND
FUZZ_EXAMPLES = os.environ.get("KIT_FUZZ_EXAMPLES", "30")


def _only(ids: list[str]) -> tuple[str, ...]:
    return () if ids == EVERY_ID else ("--only", ",".join(ids))


def _bystander(base: str) -> tuple[dict[str, str], bytes]:
    """A user the kit does not know, with todos of their own, and their list's bytes."""
    user = {"X-User-ID": str(uuid.uuid4())}
    for n in range(3):
        one_off.post(f"{base}/api/v1/todos", json={"title": f"mine {n}"}, headers=user)
    return user, one_off.get(f"{base}/api/v1/todos", headers=user).content


# -- this service, checked from outside, in both modes ---------------------------------


@job("header", services=("header",), weight=55)
def _header_run(kits: Kits) -> tuple[KitRun, bytes, bytes]:
    """The kit against this service in header mode, fuzzing included, and a bystander's
    list before and after."""
    service = kits.service("header")
    user, before = _bystander(service.base)
    run = run_kit(
        service.base,
        kits.directory("header"),
        "--origin",
        ORIGIN,
        "--metrics-url",
        str(service.metrics_url),
        "--fuzz-examples",
        FUZZ_EXAMPLES,
    )
    after = one_off.get(f"{service.base}/api/v1/todos", headers=user).content
    return run, before, after


# The jwt run fuzzes what bearer mode changes, the identity, in the shallow sweep; the
# header run the rest.
JWT_FUZZ_EXAMPLES = FUZZ_EXAMPLES if FULL_DEPTH else os.environ.get("KIT_FUZZ_EXAMPLES", "3")


@job("jwt", services=("jwt",), better_auth=True, weight=30)
def _jwt_run(kits: Kits) -> KitRun:
    """The kit against this service in jwt mode, trusting a real Better Auth, through
    which the kit signs its users up."""
    assert kits.better_auth is not None
    return run_kit(
        kits.service("jwt").base,
        kits.directory("jwt"),
        "--better-auth",
        kits.better_auth.base,
        "--origin",
        ORIGIN,
        *_only(SWEPT),
        "--fuzz-examples",
        JWT_FUZZ_EXAMPLES,
    )


LIMITED = {"TODO_MAX_TODOS_PER_USER": "25", "TODO_RATE_LIMIT": "300/60"}
LIMITS_IDS = ("FR-151", "FR-152", "FR-153", "FR-008", "FR-013")


@job("limits", instances={"limits": (SHIPPED, LIMITED)}, weight=14)
def _limits_run(kits: Kits) -> KitRun:
    return run_kit(
        kits["limits"].base,
        kits.directory("limits"),
        "--quota",
        "25",
        "--only",
        ",".join(LIMITS_IDS),
        "--fuzz-examples",
        "5" if FULL_DEPTH else "0",
    )


@job("contract 1.0", services=("header",), weight=6)
def _contract_1_0_run(kits: Kits) -> KitRun:
    released = REPO / "contracts" / "released" / "openapi-1.0.0.yaml"
    return run_kit(
        kits.service("header").base,
        kits.directory("contract-1.0"),
        "--contract",
        str(released),
        *_only(SWEPT),
        # What the 1.0 view changes is which checks apply; its fuzzing, at full depth.
        "--fuzz-examples",
        "5" if FULL_DEPTH else "0",
    )


# -- safety ----------------------------------------------------------------------------


@job("read-only", services=("header",), weight=15)
def _read_only_run(kits: Kits) -> tuple[KitRun, list[str]]:
    proxy = RecordingProxy(kits.service("header").base)
    try:
        run = run_kit(
            proxy.base,
            kits.directory("read-only"),
            "--read-only",
            "--origin",
            ORIGIN,
            "--fuzz-examples",
            "5",
        )
    finally:
        proxy.stop()
    return run, proxy.seen


def marked(database_url: str) -> int:
    """Todos in that database whose title carries the kit's mark."""
    with psycopg2.connect(libpq_url(database_url)) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM todos WHERE title LIKE %s", (MARK + "%",))
        (count,) = cursor.fetchone()
    conn.close()
    return int(count)


def _interrupted_run(kits: Kits, signum: int) -> tuple[int, str, KitRun, int]:
    instance = kits[f"interrupted {signum}"]
    directory = kits.directory(f"interrupted-{signum}")
    kit = subprocess.Popen(
        kit_command(instance.base, directory),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment.child(),
    )
    until(lambda: marked(instance.database_url) >= 30, 60, "30 todos made by the kit")
    kit.send_signal(signum)
    output, _ = kit.communicate(timeout=120)
    return (
        kit.returncode,
        output,
        KitRun(kit.returncode, output, directory),
        marked(instance.database_url),
    )


INTERRUPTING = (signal.SIGINT, signal.SIGTERM)
for _signum in INTERRUPTING:
    job(
        f"interrupted {_signum}",
        instances={f"interrupted {_signum}": (SHIPPED, {})},
        weight=8,
    )(partial(_interrupted_run, signum=_signum))


# -- against broken implementations ------------------------------------------------------

# Each defect, and the requirements it breaks: the kit must fail those and nothing else.
BROKEN = {
    "foreign-readable": {"FR-013", "FR-014", "SC-005"},
    "foreign-writable": {"FR-013", "FR-014", "SC-005"},
    "foreign-deletable": {"FR-013", "FR-014", "SC-005"},
    "forbidden-not-missing": {"FR-014"},
    "default-user": {"FR-015", "EC-2"},
    # Whitespace that counts for nothing lets a tag begin or end with it too.
    "blank-title": {"FR-016", "FR-192", "FR-201"},
    "long-title": {"FR-017"},
    # A description cut short is not among the invalid fields listed at once either.
    "long-description": {"FR-018", "SC-006"},
    "server-fields-ignored": {"FR-002", "FR-003", "FR-004"},
    "last-member-wins": {"FR-108"},
    "bad-id-500": {"FR-019", "EC-3"},
    "oldest-first": {"FR-009"},
    "frozen-updated-at": {"FR-011"},
    "delete-keeps-row": {"FR-012", "SC-004"},
    "not-problems": {"FR-020"},
    "empty-is-null": {"EC-4"},
    # A tag that never changes breaks the condition built on it too.
    "stale-etag": {"FR-111", "FR-113"},
    # Concurrent duplicates are replays too, so they create again.
    "replay-creates-again": {"FR-121", "FR-122"},
    "page-skips": {"FR-131", "FR-132"},
    # Seen before any check (FR-171): the preflight's fresh user finds todos in its list
    # (and the whole list is no longer what a walk through its pages meets); a create
    # answered 200 (not 201) is FR-008's alone, the run going on past it.
    "list-of-everyone": {"FR-009", "FR-013", "SC-005", "FR-131"},
    "created-is-200": {"FR-008"},
    # The contract's clauses of issue 36: a user id in any case, text exactly as sent,
    # lengths in characters, updated_at equal to created_at on create.
    "user-id-case": {"FR-015"},
    "nfc-titles": {"FR-008", "FR-011"},
    "title-bytes": {"FR-017"},
    "updated-at-differs": {"FR-001"},
    # 2.0's lists: a leak breaks the ids of the isolation check of every parameter; a
    # sort that loses ties, its pages alone.
    "v2-filter-ignores-the-caller": {"FR-013", "SC-005", "FR-201", "FR-202", "FR-203"},
    "v2-sort-loses-ties": {"FR-203"},
    "v2-cursor-leaks": {"FR-013", "SC-005", "FR-201", "FR-202", "FR-203"},
    # 2.1's summary: counts that read other users' todos are its own id's failure.
    "v2-summary-counts-everyone": {"FR-214"},
    # 2.1's bulk writes: each check's todos carry a tag of its own, so a delete that drops
    # its filters is seen by clear completed alone; one that drops the caller, by the
    # two checks that give another user a todo on the same tag.
    "v2-bulk-delete-ignores-its-filters": {"FR-212"},
    "v2-bulk-ignores-the-caller": {"FR-211", "FR-212"},
}


def blamable(defect: str) -> list[str]:
    """Where `defect` can show: every id it breaks, and every id sharing a check with one
    of those (a defect that check finds could be reported under either)."""
    broken = BROKEN[defect]
    near = {i for check in REGISTRY if broken & set(check.ids) for i in check.ids}
    return [i for i in EVERY_ID if i in broken | near]


# In the shallow sweep a broken implementation's run checks the ids where its defect
# can show (blamable()), so that its own are failed and none beside them is blamed; and
# only the bad-id-500 run fuzzes (3 examples: its coverage phase, which tries the
# boundaries whatever the number, finds the 500s), to hold a live run's fuzzer findings
# to their ids end to end; every kind of finding's id is pinned by
# tests/test_kit_findings.py. At full depth (nox -s kit-depth) every run checks every id
# and fuzzes ten examples, so a defect reported under an id far from its own is caught
# there.
FUZZED_BROKEN = {"bad-id-500"}


# The broken bulk writes run beside a stranger's todos (STRANGER's), which the kit's own
# tag keeps every bulk write it sends from reaching: the test counts them after the run.
BULK_BROKEN = ("v2-bulk-delete-ignores-its-filters", "v2-bulk-ignores-the-caller")
STRANGER = (3, 1)


def _a_stranger(base: str) -> None:
    """A user the kit does not know, with three todos under tags a kit's check might use,
    one of them completed."""
    user = {"X-User-ID": str(uuid.uuid4())}
    made = [
        one_off.post(f"{base}/api/v2/todos", json={"title": f"mine {n}", "tags": ["work"]},
                     headers=user).json()
        for n in range(STRANGER[0])
    ]  # fmt: skip
    for todo in made[: STRANGER[1]]:
        one_off.patch(
            f"{base}/api/v2/todos/{todo['id']}", json={"is_completed": True}, headers=user
        )


def _broken_run(kits: Kits, defect: str) -> KitRun:
    if defect in BULK_BROKEN:
        _a_stranger(kits[defect].base)
    examples = "10" if FULL_DEPTH else "3" if defect in FUZZED_BROKEN else "0"
    checked = EVERY_ID if FULL_DEPTH else blamable(defect)
    return run_kit(
        kits[defect].base, kits.directory(defect), *_only(checked), "--fuzz-examples", examples
    )


def broken_job(defect: str) -> None:
    """The kit's run against the implementation with `defect` (tests/implementations.py),
    as the job `broken <defect>`: registered by each module whose tests read it."""
    if f"broken {defect}" in JOBS:
        return
    weight = 30 if defect in FUZZED_BROKEN else 8
    job(f"broken {defect}", instances={defect: (defect, {})}, weight=weight)(
        partial(_broken_run, defect=defect)
    )


@job("expected failures", instances={"expected failures": ("blank-title", {})}, weight=3)
def _expected_failures_runs(kits: Kits) -> tuple[KitRun, KitRun]:
    base, directory = kits["expected failures"].base, kits.directory("expected-failures")
    listed = directory / "expected.yaml"
    # Every id the implementation breaks: blank titles, and (2.0's) tags whose whitespace
    # counts for nothing either.
    listed.write_text(
        "".join(
            f"- id: {rid}\n  reason: blank titles are accepted until 2.0\n"
            for rid in sorted(BROKEN["blank-title"])
        )
    )
    # FR-016 fails there, FR-009 passes: in the shallow sweep nothing else is needed to
    # tell a stale entry; at full depth both are whole runs.
    if FULL_DEPTH:
        depth: tuple[str, ...] = ("--fuzz-examples", "5")
    else:
        depth = ("--only", "FR-016,FR-009", "--fuzz-examples", "0")
    known = run_kit(base, directory / "a", "--expected-failures", str(listed), *depth)
    listed.write_text(listed.read_text() + "- id: FR-009\n  reason: stale\n")
    stale = run_kit(base, directory / "b", "--expected-failures", str(listed), *depth)
    return known, stale
