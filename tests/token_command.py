"""A --token-command for `todo-service mcp` in the tests: signs EMAIL in at the Better
Auth server at BASE and prints a fresh JWT, as a person's script would.

    python tests/token_command.py BASE EMAIL"""

import sys

import httpx
from better_auth import PASSWORD

base, email = sys.argv[1:]
with httpx.Client(base_url=base, timeout=30) as auth:
    auth.post("/api/auth/sign-in/email", json={"email": email, "password": PASSWORD})
    answer = auth.get("/api/auth/token")
    if answer.status_code != 200:
        sys.exit(f"GET {base}/api/auth/token answered {answer.status_code}")
    print(answer.json()["token"])
