"""A real Better Auth server (npm `better-auth`, `jwt` plugin, its accounts in
PostgreSQL), run by Node from clients/web/server.mjs, as the frontend's auth server
would be: users sign up over its HTTP API and get EdDSA JWTs that the service verifies
against its JWKS."""

import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import environment
import httpx
from ports import free_port
from waits import until

REPO = Path(__file__).resolve().parent.parent
SERVER = REPO / "clients" / "web" / "server.mjs"


@dataclass(frozen=True)
class SignedUp:
    """A Better Auth user: their id (32 letters and digits), a JWT, and the session
    cookies that get more tokens."""

    subject: str
    token: str
    cookies: httpx.Cookies


PASSWORD = "correct horse battery staple"


class BetterAuth:
    """Keeps its accounts in `database` (a PostgreSQL URL), in a schema of its own;
    started again on the same database and `port`, it knows them still."""

    def __init__(
        self,
        workdir: Path,
        database: str,
        api: str = "http://127.0.0.1:8000",
        port: int | None = None,
        keep_accounts: bool = False,
    ) -> None:
        """`keep_accounts`: delete-user is not allowed (a deployment's choice)."""
        node = shutil.which("node")
        assert node, "Node.js runs the auth server"
        assert (REPO / "node_modules" / "better-auth").is_dir(), (
            "better-auth is not installed: `npm ci` (nox -s tests runs it)"
        )
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"better-auth-{self.port}.log"
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [
                    *(node, str(SERVER), "--port", str(self.port), "--api", api),
                    *("--database", database, *(["--keep-accounts"] if keep_accounts else [])),
                ],
                cwd=REPO,
                env=environment.child(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def up() -> bool:
            assert self.process.poll() is None, self.log_path.read_text()
            return httpx.get(f"{self.base}/api/auth/ok", timeout=2).status_code == 200

        until(up, 30, "Better Auth to start", ignoring=(httpx.TransportError,), every=0.1)

    @property
    def jwks_url(self) -> str:
        return f"{self.base}/api/auth/jwks"

    def sign_up(self, name: str = "Someone", email: str | None = None) -> SignedUp:
        """A new user, signed up over Better Auth's HTTP API, and their first JWT."""
        email = email or f"{uuid.uuid4().hex}@example.com"
        return self._signed("/api/auth/sign-up/email", email=email, password=PASSWORD, name=name)

    def sign_in(self, email: str) -> SignedUp:
        """A user who signed up before, signed in with their email and password."""
        return self._signed("/api/auth/sign-in/email", email=email, password=PASSWORD)

    def _signed(self, path: str, **form: str) -> SignedUp:
        with httpx.Client(base_url=self.base, timeout=10) as client:
            answer = client.post(path, json=form)
            assert answer.status_code == 200, answer.text
            subject = answer.json()["user"]["id"]
            token = client.get("/api/auth/token")
            assert token.status_code == 200, token.text
            return SignedUp(subject, token.json()["token"], client.cookies)

    def fresh_token(self, user: SignedUp) -> str:
        """Another JWT for the same session, as a frontend gets before the last expires."""
        answer = httpx.get(f"{self.base}/api/auth/token", cookies=user.cookies, timeout=10)
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["token"]
        return token

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
