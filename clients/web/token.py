"""Prints a fresh JWT for a Better Auth user, as the todo service's API takes it: signs in
with email and password, then asks GET /api/auth/token with the session. No browser;
only Python's standard library. A `--token-command` for `todo-service mcp`, or a way to
get a token by hand (docs/agents.md).

    BETTER_AUTH_PASSWORD=... python3 clients/web/token.py BETTER_AUTH_URL EMAIL"""

import json
import os
import sys
import urllib.error
import urllib.request
from http.cookiejar import CookieJar


def token(base: str, email: str, password: str) -> str:
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    signing_in = urllib.request.Request(
        f"{base}/api/auth/sign-in/email",
        data=json.dumps({"email": email, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with browser.open(signing_in, timeout=30):
        pass
    with browser.open(f"{base}/api/auth/token", timeout=30) as answer:
        found: str = json.load(answer)["token"]
        return found


if __name__ == "__main__":
    if len(sys.argv) != 3 or not os.environ.get("BETTER_AUTH_PASSWORD"):
        sys.exit("usage: BETTER_AUTH_PASSWORD=... token.py BETTER_AUTH_URL EMAIL")
    try:
        print(token(sys.argv[1].rstrip("/"), sys.argv[2], os.environ["BETTER_AUTH_PASSWORD"]))
    except (urllib.error.URLError, KeyError, ValueError) as error:
        sys.exit(f"token.py: no token from {sys.argv[1]}: {error}")
