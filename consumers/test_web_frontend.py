"""The browser frontend, for real: headless Chromium (Debian's) opens the page on its
own origin, served beside a real Better Auth server as a Next.js app would; two users
sign up through the page, which drives the todo service on another origin with the
client generated from openapi.yaml and Better Auth's JWTs. This proves the preflight,
the exposed headers, verified identity and the generated client in a real browser."""

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import CHROMIUM_FLAGS, REPO, chromium
from playwright.sync_api import Browser, Page, expect, sync_playwright

from service.embedded import free_port


@dataclass(frozen=True)
class Frontend:
    page_url: str
    api: str


def _wait(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, f"{what} exited"
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{what} did not come up"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def frontend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Frontend]:
    """The page and Better Auth on one origin, the service in `jwt` mode on another,
    trusting Better Auth's keys and listing the page's origin for CORS."""
    build = subprocess.run(
        ["npm", "run", "web:build"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert build.returncode == 0, build.stdout + build.stderr
    page_port, api_port = free_port(), free_port()
    origin, api = f"http://127.0.0.1:{page_port}", f"http://127.0.0.1:{api_port}"
    workdir = tmp_path_factory.mktemp("frontend")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEON_", "TODO_"))}
    env |= {
        "TODO_AUTH_MODE": "jwt",
        "TODO_JWT_JWKS_URL": f"{origin}/api/auth/jwks",
        "TODO_JWT_ISSUER": origin,
        "TODO_JWT_AUDIENCE": origin,
        "TODO_CORS_ORIGINS": origin,
    }
    log = (workdir / "processes.log").open("wb")
    web = subprocess.Popen(
        ["node", "clients/web/server.mjs", "--port", str(page_port), "--api", api],
        cwd=REPO,
        stdout=log,
        stderr=log,
    )
    service = subprocess.Popen(
        [str(Path(sys.executable).with_name("todo-service")), "serve", "--port", str(api_port)],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        _wait(f"{origin}/api/auth/ok", web, "the page's server")
        _wait(f"{api}/health/ready", service, "todo-service")
        yield Frontend(origin, api)
    finally:
        for process in (service, web):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


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


def _add(page: Page, title: str) -> None:
    count = int(page.text_content("#count") or "0")
    page.fill("#new-title", title)
    page.click("#new-form button")
    expect(page.locator("#count")).to_have_text(str(count + 1), timeout=15_000)
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
    expect(alice.locator("#count")).to_have_text("0")
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
    expect(alice.locator("#count")).to_have_text("2", timeout=15_000)
    _ready(alice)

    alice.reload()
    _ready(alice)
    assert sorted(_titles(alice)) == ["Buy milk", "Walk the dog"]
    expect(alice.locator("#todos li.done .title")).to_have_text("Walk the dog")

    _sign_up(bob, frontend, "Bob")
    expect(bob.locator("#count")).to_have_text("0")
    assert _titles(bob) == []
    _add(bob, "Bob's own")
    assert _titles(bob) == ["Bob's own"]

    alice.reload()
    _ready(alice)
    assert sorted(_titles(alice)) == ["Buy milk", "Walk the dog"]

    alice.click("#signout")
    expect(alice.locator("#auth")).to_be_visible(timeout=15_000)
    assert _titles(alice) == []
    assert blocked == [], blocked
    alice_context.close()
    bob_context.close()
