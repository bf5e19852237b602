"""The browser frontend, for real: headless Chromium (Debian's) opens the page on its
own origin, served beside a real Better Auth server as a Next.js app would; two users
sign up through the page, which drives the todo service on another origin with the
client generated from openapi.yaml and Better Auth's JWTs. This proves the preflight,
the exposed headers, verified identity and the generated client in a real browser."""

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

import httpx
import pytest
from conftest import CHROMIUM_FLAGS, REPO, chromium
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
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
    assert (alice.get_attribute("body", "data-last-location") or "").startswith("/api/v1/todos/")
    assert (alice.get_attribute("body", "data-list-etag") or "").startswith('"')

    walk = alice.locator("#todos li", has=alice.locator(".title", has_text="Walk the dog"))
    walk.locator(".toggle").check()
    expect(walk).to_have_class("todo done", timeout=15_000)
    _ready(alice)
    report = alice.locator("#todos li", has=alice.locator(".title", has_text="Write the report"))
    report.locator(".delete").click()
    expect(_count(alice)).to_have_text("2 todos", timeout=15_000)
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
    expect(_count(bob)).to_have_text("1 todo")

    alice.reload()
    _ready(alice)
    assert sorted(_titles(alice)) == ["Buy milk", "Walk the dog"]

    alice.click("#signout")
    expect(alice.locator("#auth")).to_be_visible(timeout=15_000)
    assert _titles(alice) == []
    assert blocked == [], blocked
    alice_context.close()
    bob_context.close()


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
        page.reload()
        _ready(page)
        problem = page.locator("#problem")
        expect(problem).to_be_visible()
        expect(problem).to_contain_text(f"the todo service at {frontend.api} cannot be reached")
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
    expect(status).to_contain_text("sign-in's database is down")
    expect(status).to_contain_text(f"the todo service at {frontend.api} is up, but its database")
    expect(status).to_contain_text("(503: ")
    context.close()
