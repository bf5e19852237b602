"""The auth server's part in the benchmark: an Ed25519 key (the algorithm Better Auth's
`jwt` plugin uses), its JWKS on a local HTTP server, and tokens signed with it."""

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519
from jwt.algorithms import OKPAlgorithm

from service.embedded import free_port


class AuthKeys:
    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self.private = ed25519.Ed25519PrivateKey.generate()
        self.kid = uuid.uuid4().hex
        self.port = free_port()
        self.jwks_url = f"http://127.0.0.1:{self.port}/api/auth/jwks"
        published = OKPAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        body = json.dumps({"keys": [{**published, "kid": self.kid, "alg": "EdDSA"}]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def token(self, subject: str, seconds: int = 3600) -> str:
        now = int(time.time())
        claims = {"sub": subject, "iss": self.issuer, "aud": self.issuer, "iat": now}
        return jwt.encode(
            {**claims, "exp": now + seconds},
            self.private,
            algorithm="EdDSA",
            headers={"kid": self.kid},
        )

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
