"""The browser frontend, for real: headless Chromium (Debian's) opens the page on its
own origin, served beside a real Better Auth server as a Next.js app would; two users
sign up through the page, which drives the todo service's /api/v2 on another origin
with the client generated from openapi.yaml and Better Auth's JWTs. This proves the
preflight, the exposed headers, verified identity and the generated client in a real
browser, and that the page is TodoMVC-complete (FR-223): filters, "N items left",
toggle all and clear completed (one request each), edit in place with its conflict,
priority, due date, tags, search and every sort, each user's todos their own."""

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml
from conftest import CHROMIUM_FLAGS, REPO, SPEC_PATH, chromium
from playwright.sync_api import Browser, Locator, Page, Request, expect, sync_playwright
from waits import until

from service.embedded import free_port

TODO_SERVICE = str(Path(sys.executable).with_name("todo-service"))


Popen = subprocess.Popen[bytes]


@dataclass
class Frontend:
    page_url: str
    api: str
    service: Popen
    start_service: Callable[[], Popen]
    # The `serve` that runs the embedded PostgreSQL (with `shared`, not the page's API).
    owner: Popen

    def stop_service(self) -> None:
        self.service.send_signal(signal.SIGTERM)
        self.service.wait(timeout=30)

    def stop_database(self) -> None:
        self.owner.send_signal(signal.SIGTERM)
        self.owner.wait(timeout=30)

    def restart_service(self) -> None:
        self.service = self.start_service()
        _wait(f"{self.api}/health/ready", self.service, "todo-service")


def _wait(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    def up() -> bool:
        assert process.poll() is None, f"{what} exited"
        return httpx.get(url, timeout=2).status_code < 500

    until(up, 60, f"{what} to come up", ignoring=(httpx.TransportError,), every=0.2)


def _serve(workdir: Path, port: int, env: dict[str, str], log: IO[bytes]) -> Callable[[], Popen]:
    def start() -> Popen:
        command = [TODO_SERVICE, "serve", "--port", str(port)]
        return subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=log)

    return start


@contextmanager
def _frontend(workdir: Path, shared: bool) -> Iterator[Frontend]:
    """As the web example's guide runs it: the service in `jwt` mode on its embedded
    PostgreSQL, trusting Better Auth's keys and listing the page's origin for CORS; then
    the page and Better Auth on another origin, Better Auth's accounts in the service's
    database (`todo-service db-url`). `shared`: the page's API is a second `serve` on
    that database, which can stop while the database (and so Better Auth) stays up."""
    page_port, api_port = free_port(), free_port()
    origin, api = f"http://127.0.0.1:{page_port}", f"http://127.0.0.1:{api_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEON_", "TODO_"))}
    env |= {
        "TODO_AUTH_MODE": "jwt",
        "TODO_JWT_JWKS_URL": f"{origin}/api/auth/jwks",
        "TODO_JWT_ISSUER": origin,
        "TODO_JWT_AUDIENCE": origin,
        "TODO_CORS_ORIGINS": origin,
    }
    log = (workdir / "processes.log").open("wb")
    owner_port = free_port() if shared else api_port
    owner = _serve(workdir, owner_port, env, log)()
    processes: list[Popen] = [owner]
    frontend: Frontend | None = None
    try:
        _wait(f"http://127.0.0.1:{owner_port}/health/ready", owner, "todo-service")
        database = subprocess.run(
            [TODO_SERVICE, "db-url"], cwd=workdir, env=env, capture_output=True, text=True,
            check=True,
        ).stdout.strip()  # fmt: skip
        start_api = _serve(workdir, api_port, env | {"NEON_DATABASE_URL": database}, log)
        service = start_api() if shared else owner
        processes.append(service)
        _wait(f"{api}/health/ready", service, "todo-service")
        web = subprocess.Popen(
            ["node", "clients/web/server.mjs", "--port", str(page_port), "--api", api,
             "--database", database],
            cwd=REPO,
            stdout=log,
            stderr=log,
        )  # fmt: skip
        processes.insert(0, web)
        _wait(f"{origin}/api/auth/ok", web, "the page's server")
        frontend = Frontend(origin, api, service, start_api, owner)
        yield frontend
    finally:
        if frontend is not None:
            processes.append(frontend.service)  # started again, perhaps
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)


@pytest.fixture(scope="module")
def built() -> None:
    build = subprocess.run(
        ["npm", "run", "web:build"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert build.returncode == 0, build.stdout + build.stderr


@pytest.fixture(scope="module")
def frontend(built: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Frontend]:
    with _frontend(tmp_path_factory.mktemp("frontend"), shared=False) as running:
        yield running


@pytest.fixture
def frontend_on_a_shared_database(built: None, tmp_path: Path) -> Iterator[Frontend]:
    with _frontend(tmp_path, shared=True) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


def _ready(page: Page) -> None:
    expect(page.locator("body")).to_have_attribute("data-state", "ready", timeout=15_000)


def _sign_up(page: Page, frontend: Frontend, name: str) -> str:
    email = f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.com"
    page.goto(frontend.page_url)
    _ready(page)
    expect(page.locator("#auth")).to_be_visible()
    page.fill("#signup-name", name)
    page.fill("#signup-email", email)
    page.fill("#signup-password", "correct horse battery staple")
    page.click("#signup-form button")
    expect(page.locator("#app")).to_be_visible(timeout=15_000)
    _ready(page)
    expect(page.locator("#who")).to_have_text(email)
    return email


def _count(page: Page) -> Locator:
    return page.locator("#count")


def _add(page: Page, title: str) -> None:
    count = int(_count(page).get_attribute("data-count") or "0")
    page.fill("#new-title", title)
    page.click("#new-form button")
    expect(_count(page)).to_have_attribute("data-count", str(count + 1), timeout=15_000)
    _ready(page)


def _titles(page: Page) -> list[str]:
    return page.locator("#todos .title").all_text_contents()


UNREACHABLE = "Cannot reach the todo service. Check your connection and try again."


def _row(page: Page, title: str) -> Locator:
    return page.locator("#todos li", has=page.locator(".title", has_text=title))


def _bulk_writes(page: Page) -> list[Request]:
    """The bulk PATCHes and DELETEs (on /api/v2/todos itself) the page sends from now."""
    sent: list[Request] = []

    def seen(request: Request) -> None:
        if request.method in ("PATCH", "DELETE") and urlsplit(request.url).path == "/api/v2/todos":
            sent.append(request)

    page.on("request", seen)
    return sent


def _query(request: Request) -> dict[str, list[str]]:
    return parse_qs(urlsplit(request.url).query)


def _token(page: Page, frontend: Frontend) -> str:
    """The signed-in user's JWT, from Better Auth with the page's own cookies."""
    answer = page.context.request.get(f"{frontend.page_url}/api/auth/token")
    assert answer.ok, answer.status
    token: str = answer.json()["token"]
    return token


@pytest.mark.req("FR-106", "FR-101", "FR-105", "FR-107")
def test_two_users_use_the_page_and_never_see_each_others_todos(
    frontend: Frontend, browser: Browser
) -> None:
    alice_context, bob_context = browser.new_context(), browser.new_context()
    alice, bob = alice_context.new_page(), bob_context.new_page()
    blocked: list[str] = []
    for page in (alice, bob):
        page.on(
            "console",
            lambda message: blocked.append(message.text) if "CORS" in message.text else None,
        )

    _sign_up(alice, frontend, "Alice")
    expect(_count(alice)).to_have_text("No todos yet.")
    for title in ("Buy milk", "Walk the dog", "Write the report"):
        _add(alice, title)
    assert sorted(_titles(alice)) == ["Buy milk", "Walk the dog", "Write the report"]
    # Location and ETag came from another origin: readable only because they are exposed.
    assert (alice.get_attribute("body", "data-last-location") or "").startswith("/api/v2/todos/")
    assert (alice.get_attribute("body", "data-list-etag") or "").startswith('"')

    walk = alice.locator("#todos li", has=alice.locator(".title", has_text="Walk the dog"))
    walk.locator(".toggle").check()
    expect(walk).to_have_class("todo done", timeout=15_000)
    _ready(alice)
    alice.get_by_role("button", name="Delete “Write the report”").click()
    expect(_count(alice)).to_have_text("1 item left", timeout=15_000)
    _ready(alice)

    alice.reload()
    _ready(alice)
    assert sorted(_titles(alice)) == ["Buy milk", "Walk the dog"]
    expect(alice.locator("#todos li.done .title")).to_have_text("Walk the dog")

    _sign_up(bob, frontend, "Bob")
    expect(_count(bob)).to_have_text("No todos yet.")
    assert _titles(bob) == []
    _add(bob, "Bob's own")
    assert _titles(bob) == ["Bob's own"]
    expect(_count(bob)).to_have_text("1 item left")

    alice.reload()
    _ready(alice)
    assert sorted(_titles(alice)) == ["Buy milk", "Walk the dog"]

    alice.click("#signout")
    expect(alice.locator("#auth")).to_be_visible(timeout=15_000)
    assert _titles(alice) == []
    assert blocked == [], blocked
    alice_context.close()
    bob_context.close()


@pytest.mark.req("FR-223")
def test_with_the_service_stopped_the_page_says_so_and_never_shows_zero_todos(
    frontend_on_a_shared_database: Frontend, browser: Browser
) -> None:
    frontend = frontend_on_a_shared_database
    context = browser.new_context()
    page = context.new_page()
    requests: list[str] = []
    page.on("requestfailed", lambda request: requests.append(request.url))
    page.on("response", lambda r: requests.append(r.url) if r.status == 404 else None)
    _sign_up(page, frontend, "Carol")
    _add(page, "Still here")
    frontend.stop_service()
    try:
        # A change the page cannot send: said in words, not as a request log.
        page.fill("#new-title", "Never sent")
        page.click("#new-form button")
        _ready(page)
        expect(page.locator("#status")).to_have_text(UNREACHABLE)
        page.reload()
        _ready(page)
        problem = page.locator("#problem")
        expect(problem).to_be_visible()
        expect(problem).to_contain_text(UNREACHABLE)
        expect(_count(page)).to_have_text("")
        assert _titles(page) == []
    finally:
        frontend.restart_service()
    page.reload()
    _ready(page)
    expect(page.locator("#problem")).to_be_hidden()
    assert _titles(page) == ["Still here"]
    # Nothing the page asked for itself was missing (the icon included).
    assert [url for url in requests if url.startswith(frontend.page_url)] == []
    context.close()


def test_with_the_database_stopped_the_page_says_so_and_does_not_blame_sign_in(
    frontend_on_a_shared_database: Frontend, browser: Browser
) -> None:
    """The service stays up, its database (the embedded one, which Better Auth shares)
    stops: the page says which part is down, from the service's readiness problem and
    its own server's database check, rather than only that sign-in failed."""
    frontend = frontend_on_a_shared_database
    context = browser.new_context()
    page = context.new_page()
    _sign_up(page, frontend, "Dave")
    frontend.stop_database()
    page.reload()
    _ready(page)
    status = page.locator("#status")
    expect(status).to_contain_text("Sign-in is unavailable")
    expect(status).to_contain_text("Sign-in's database is down")
    expect(status).to_contain_text(f"The todo service at {frontend.api} is up, but its database")
    expect(status).to_contain_text("(503: ")
    context.close()


@pytest.mark.req("FR-223")
def test_filters_items_left_toggle_all_and_clear_completed_each_user_their_own(
    frontend: Frontend, browser: Browser
) -> None:
    alice_context, bob_context = browser.new_context(), browser.new_context()
    alice, bob = alice_context.new_page(), bob_context.new_page()
    _sign_up(alice, frontend, "Alice")
    _sign_up(bob, frontend, "Bob")
    for title in ("Buy milk", "Walk the dog", "Write the report"):
        _add(alice, title)
    _add(bob, "Bob's own")
    expect(_count(alice)).to_have_text("3 items left")
    expect(_count(bob)).to_have_text("1 item left")
    assert _titles(bob) == ["Bob's own"]

    alice.get_by_role("checkbox", name="Completed: “Walk the dog”").check()
    expect(_count(alice)).to_have_text("2 items left", timeout=15_000)
    _ready(alice)
    titles = alice.locator("#todos .title")
    alice.get_by_role("button", name="Active", exact=True).click()
    expect(titles).to_have_text(["Write the report", "Buy milk"])
    expect(alice.locator("#show-active")).to_have_attribute("aria-pressed", "true")
    alice.get_by_role("button", name="Completed", exact=True).click()
    expect(titles).to_have_text(["Walk the dog"])
    # The count is of the open todos, whatever the list shows.
    expect(_count(alice)).to_have_text("2 items left")
    alice.get_by_role("button", name="All", exact=True).click()
    expect(titles).to_have_text(["Write the report", "Walk the dog", "Buy milk"])
    _ready(alice)

    # Toggle all: one request completing the open ones, then one reopening them all.
    sent = _bulk_writes(alice)
    toggle_all = alice.get_by_role("checkbox", name="Mark all as complete")
    toggle_all.click()
    expect(_count(alice)).to_have_text("0 items left", timeout=15_000)
    _ready(alice)
    expect(alice.locator("#todos li.done")).to_have_count(3)
    assert [(r.method, _query(r)) for r in sent] == [("PATCH", {"completed": ["false"]})]
    assert sent[0].post_data_json == {"is_completed": True}
    alice.get_by_role("checkbox", name="Mark all as active").click()
    expect(_count(alice)).to_have_text("3 items left", timeout=15_000)
    _ready(alice)
    expect(alice.locator("#todos li.done")).to_have_count(0)
    assert [(r.method, _query(r)) for r in sent[1:]] == [("PATCH", {"completed": ["true"]})]
    assert sent[1].post_data_json == {"is_completed": False}

    # Clear completed: one request, the open todos left.
    for title in ("Buy milk", "Write the report"):
        _row(alice, title).locator(".toggle").check()
        _ready(alice)
    expect(_count(alice)).to_have_text("1 item left", timeout=15_000)
    alice.get_by_role("button", name="Clear completed (2)").click()
    expect(titles).to_have_text(["Walk the dog"], timeout=15_000)
    _ready(alice)
    assert [(r.method, _query(r)) for r in sent[2:]] == [("DELETE", {"completed": ["true"]})]
    expect(_count(alice)).to_have_text("1 item left")
    expect(alice.locator("#clear-completed")).to_be_hidden()

    # Bob's todo was in none of Alice's bulk writes, and he sees none of hers.
    bob.reload()
    _ready(bob)
    assert _titles(bob) == ["Bob's own"]
    expect(_count(bob)).to_have_text("1 item left")
    bob.get_by_role("button", name="Completed", exact=True).click()
    expect(bob.locator("#empty")).to_have_text("No todos match what is shown.")
    alice_context.close()
    bob_context.close()


@pytest.mark.req("FR-223")
def test_edit_in_place_saves_cancels_and_says_plainly_when_the_todo_changed_elsewhere(
    frontend: Frontend, browser: Browser
) -> None:
    context = browser.new_context()
    page = context.new_page()
    _sign_up(page, frontend, "Erin")
    _add(page, "Draft")
    title = page.locator("#todos .title")
    editing = page.locator("#todos .editing")

    title.dblclick()
    expect(editing).to_be_focused()
    expect(editing).to_have_accessible_name("New title for “Draft”")
    editing.fill("Final draft")
    editing.press("Enter")
    expect(title).to_have_text(["Final draft"], timeout=15_000)
    _ready(page)

    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.method) if r.method == "PATCH" else None)
    title.dblclick()
    editing.fill("Not this")
    editing.press("Escape")
    expect(title).to_have_text(["Final draft"])
    assert sent == []

    # Leaving the input saves, as Enter does; the Edit button opens it too.
    page.get_by_role("button", name="Edit “Final draft”").click()
    editing.fill("Blurred")
    page.locator("h1").click()
    expect(title).to_have_text(["Blurred"], timeout=15_000)
    _ready(page)

    # Changed from outside while being edited: the page's If-Match no longer holds.
    todo_id = page.locator("#todos li").get_attribute("data-id")
    title.dblclick()
    expect(editing).to_be_focused()
    _ready(page)
    outside = httpx.patch(
        f"{frontend.api}/api/v2/todos/{todo_id}",
        headers={"Authorization": f"Bearer {_token(page, frontend)}"},
        json={"title": "Changed elsewhere"},
    )
    assert outside.status_code == 200, outside.text
    editing.fill("Mine")
    editing.press("Enter")
    expect(page.locator("#status")).to_have_text(
        "This todo changed elsewhere; reloaded it. Your edit was not saved.", timeout=15_000
    )
    expect(title).to_have_text(["Changed elsewhere"])
    _ready(page)
    page.reload()
    _ready(page)
    expect(title).to_have_text(["Changed elsewhere"])
    context.close()


SORTED = {  # the titles in each sort's order, for the three todos below
    "-created_at": ["Another report", "Call mum", "Write the report"],
    "created_at": ["Write the report", "Call mum", "Another report"],
    "due_at": ["Call mum", "Write the report", "Another report"],
    "-due_at": ["Write the report", "Call mum", "Another report"],
    "priority": ["Another report", "Call mum", "Write the report"],
    "-priority": ["Write the report", "Call mum", "Another report"],
    "title": ["Another report", "Call mum", "Write the report"],
    "-title": ["Write the report", "Call mum", "Another report"],
}


def _add_with(page: Page, title: str, priority: str, due: str, tags: str) -> None:
    page.get_by_label("Priority").select_option(priority)
    page.get_by_label("Due").fill(due)
    page.get_by_label("Tags").fill(tags)
    _add(page, title)


@pytest.mark.req("FR-223")
def test_priority_due_and_tags_shown_search_and_every_sort_of_the_contract(
    frontend: Frontend, browser: Browser
) -> None:
    # In Paris: the due date typed is local time, sent with its offset.
    context = browser.new_context(timezone_id="Europe/Paris", locale="en-GB")
    page = context.new_page()
    _sign_up(page, frontend, "Dave")
    _add_with(page, "Write the report", "high", "2030-01-02T09:30", "work, urgent")
    _add_with(page, "Call mum", "low", "2029-06-01T18:00", "home")
    _add(page, "Another report")

    report = _row(page, "Write the report")
    expect(report.locator(".priority")).to_have_text("high priority")
    expect(report.locator("time.due")).to_have_attribute("datetime", "2030-01-02T08:30:00+00:00")
    expect(report.locator("time.due")).to_contain_text("2 Jan 2030, 09:30")
    expect(report.locator(".tag")).to_have_text(["#work", "#urgent"])
    expect(_row(page, "Call mum").locator(".tag")).to_have_text(["#home"])
    expect(_row(page, "Another report").locator(".priority, .due, .tag")).to_have_count(0)
    # The form is empty again for the next todo.
    expect(page.get_by_label("Priority")).to_have_value("none")
    expect(page.get_by_label("Tags")).to_have_value("")

    titles = page.locator("#todos .title")
    search = page.get_by_role("searchbox", name="Search")
    search.fill("REPORT")
    expect(titles).to_have_text(["Another report", "Write the report"], timeout=15_000)
    search.fill("mum")
    expect(titles).to_have_text(["Call mum"], timeout=15_000)
    search.fill("")
    expect(titles).to_have_text(SORTED["-created_at"], timeout=15_000)
    _ready(page)

    spec = yaml.safe_load(SPEC_PATH.read_text())
    sorts = spec["components"]["parameters"]["Sort"]["schema"]["enum"]
    menu = page.get_by_label("Sort")
    offered = menu.locator("option").evaluate_all("options => options.map(o => o.value)")
    assert sorted(offered) == sorted(sorts) == sorted(SORTED)
    for sort in sorts:
        menu.select_option(sort)
        expect(titles).to_have_text(SORTED[sort], timeout=15_000)
        _ready(page)

    # Every control has a name, and no two buttons share one.
    nameless = page.evaluate(
        """() => [...document.querySelectorAll('#app input, #app select, #app button')]
            .filter(e => !e.getAttribute("aria-label") && !e.closest("label") && !e.labels?.length
                         && !(e.tagName === 'BUTTON' && e.textContent.trim()))
            .map(e => e.outerHTML)"""
    )
    assert nameless == []
    names = [
        b.get_attribute("aria-label") or b.inner_text() for b in page.locator("#todos button").all()
    ]
    assert len(names) == len(set(names)) == 6, names
    context.close()
