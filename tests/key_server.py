"""A JWKS endpoint of the tests' own, with signing keys they hold: it makes the tokens
Better Auth will not sign (other algorithms, a wrong issuer, no `exp`, ...), publishes
new keys (rotation), counts its fetches, and goes down on request."""

import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from ports import free_port

ISSUER = "https://auth.example"
AUDIENCE = "https://todos.example"


@dataclass
class SigningKey:
    algorithm: str
    private: Any
    kid: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def new(cls, algorithm: str) -> "SigningKey":
        private: Any
        if algorithm == "EdDSA":
            private = ed25519.Ed25519PrivateKey.generate()
        elif algorithm == "ES256":
            private = ec.generate_private_key(ec.SECP256R1())
        else:
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(algorithm, private)

    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        published: dict[str, Any]
        if self.algorithm == "EdDSA":
            published = OKPAlgorithm.to_jwk(public, as_dict=True)
        elif self.algorithm == "ES256":
            published = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            published = RSAAlgorithm.to_jwk(public, as_dict=True)
        return {**published, "kid": self.kid, "alg": self.algorithm, "use": "sig"}

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        return jwt.encode(
            claims, self.private, algorithm=self.algorithm, headers={"kid": self.kid, **header}
        )


class KeyServer:
    """Serves {"keys": [...]} for the keys published, on a port of its own."""

    def __init__(self) -> None:
        self.keys: list[SigningKey] = []
        self.fetches = 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/jwks"
        self._server: ThreadingHTTPServer | None = None

    def publish(self, *keys: SigningKey) -> None:
        self.keys = list(keys)

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                body = json.dumps({"keys": [key.jwk() for key in owner.keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
