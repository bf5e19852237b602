"""Hostile and broken tokens: each is a 401 with the right code and changes nothing; a
key server out of reach is a 503; keys rotate; HS256 with a shared secret. Tokens
Better Auth would never sign are made with keys of the tests' own, published as a JWKS
by a test HTTP server."""

import base64
import hashlib
import hmac
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from api import TODOS, problem
from conftest import make_settings
from fastapi.testclient import TestClient
from httpx2 import Response  # what TestClient answers (Starlette prefers httpx2)
from key_server import AUDIENCE, ISSUER, KeyServer, SigningKey
from served import EXECUTABLE
from sqlalchemy import text
from sqlalchemy.engine import Engine
from waits import until

from service.app import create_app
from service.db import Database
from service.identity import owner_id

SECRET = "a shared secret of at least 32 bytes, for HS256"


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values = {"sub": "user-7", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600}
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.fixture
def key_server() -> Iterator[KeyServer]:
    server = KeyServer()
    server.publish(SigningKey.new("EdDSA"), SigningKey.new("ES256"), SigningKey.new("RS256"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def jwks_app(
    postgres_url: str, database: Database, admin_engine: Engine, key_server: KeyServer
) -> TestClient:
    settings = make_settings(
        postgres_url,
        TODO_AUTH_MODE="jwt",
        TODO_JWT_JWKS_URL=key_server.url,
        TODO_JWT_ISSUER=ISSUER,
        TODO_JWT_AUDIENCE=AUDIENCE,
        TODO_JWT_LEEWAY_SECONDS=0,
    )
    return TestClient(create_app(settings, database), raise_server_exceptions=False)


def _post(client: TestClient, authorization: str | None) -> Response:
    headers = {} if authorization is None else {"Authorization": authorization}
    answer: Response = client.post(TODOS, json={"title": "should not exist"}, headers=headers)
    return answer


def _nothing_written(engine: Engine) -> None:
    with engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM todos")).scalar_one() == 0
        assert conn.execute(text("SELECT count(*) FROM users")).scalar_one() == 0


def _confused(keys: list[SigningKey]) -> str:
    # HS256 "signed" with the published public key, the classic algorithm confusion.
    rsa = next(k for k in keys if k.algorithm == "RS256")
    public = json.dumps(rsa.jwk()).encode()
    header = {"alg": "HS256", "kid": rsa.kid}
    return _hs256_by_hand(header, claims(), public)


def _hs256_by_hand(header: dict[str, Any], body: dict[str, Any], key: bytes) -> str:
    """PyJWT refuses to sign HS256 with a PEM or JWK public key; an attacker would not."""
    signing_input = f"{_b64(header)}.{_b64(body)}"
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def _signed(**overrides: Any) -> Callable[[list[SigningKey]], str]:
    return lambda keys: keys[0].sign(claims(**overrides))


def _unknown_kid(keys: list[SigningKey]) -> str:
    return SigningKey.new("EdDSA").sign(claims())


def _wrong_key_same_kid(keys: list[SigningKey]) -> str:
    impostor = SigningKey.new("EdDSA")
    impostor.kid = keys[0].kid
    return impostor.sign(claims())


# name: (Authorization header made from the published keys, expected code)
HOSTILE: dict[str, tuple[Callable[[list[SigningKey]], str | None], str]] = {
    # (No token, none, tampered, malformed and foreign-algorithm tokens are the
    # conformance kit's, made without the key: tests/test_conformance_kit.py.)
    "Bearer without a token": (lambda keys: "Bearer ", "MISSING_TOKEN"),
    "HS256 signed with the public key": (lambda k: f"Bearer {_confused(k)}", "INVALID_TOKEN"),
    "expired": (lambda k: f"Bearer {_signed(exp=int(time.time()) - 5)(k)}", "TOKEN_EXPIRED"),
    "not yet valid": (
        lambda k: f"Bearer {_signed(nbf=int(time.time()) + 300)(k)}",
        "INVALID_TOKEN",
    ),
    "wrong issuer": (lambda k: f"Bearer {_signed(iss='https://evil.example')(k)}", "INVALID_TOKEN"),
    "wrong audience": (
        lambda k: f"Bearer {_signed(aud='https://other.example')(k)}",
        "INVALID_TOKEN",
    ),
    "unknown kid": (lambda k: f"Bearer {_unknown_kid(k)}", "INVALID_TOKEN"),
    "another key under a known kid": (
        lambda k: f"Bearer {_wrong_key_same_kid(k)}",
        "INVALID_TOKEN",
    ),
    "missing user claim": (lambda k: f"Bearer {_signed(sub=None)(k)}", "INVALID_TOKEN"),
    "empty user claim": (lambda k: f"Bearer {_signed(sub='')(k)}", "INVALID_TOKEN"),
    "missing exp": (lambda k: f"Bearer {_signed(exp=None)(k)}", "INVALID_TOKEN"),
}


@pytest.mark.req("FR-102", "FR-103")
@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_tokens_are_401_with_their_code_and_change_nothing(
    jwks_app: TestClient, key_server: KeyServer, admin_engine: Engine, case: str
) -> None:
    make, code = HOSTILE[case]
    authorization = make(key_server.keys)
    answer = _post(jwks_app, authorization)
    body = problem(answer, 401, code)
    challenge = answer.headers["www-authenticate"]
    if code == "MISSING_TOKEN":
        assert challenge == "Bearer"
    else:
        assert challenge == 'Bearer error="invalid_token"'
    assert "Traceback" not in body["detail"]
    _nothing_written(admin_engine)


@pytest.mark.req("FR-102")
@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256", "RS256"])
def test_each_key_type_verifies_with_its_one_algorithm(
    jwks_app: TestClient, key_server: KeyServer, algorithm: str
) -> None:
    key = next(k for k in key_server.keys if k.algorithm == algorithm)
    answer = _post(jwks_app, f"Bearer {key.sign(claims())}")
    assert answer.status_code == 201, answer.text
    assert answer.json()["user_id"] == str(owner_id(ISSUER, "user-7"))


@pytest.mark.req("FR-102", "FR-103")
def test_the_user_claim_is_configurable(
    postgres_url: str, database: Database, admin_engine: Engine, key_server: KeyServer
) -> None:
    settings = make_settings(
        postgres_url,
        TODO_AUTH_MODE="jwt",
        TODO_JWT_JWKS_URL=key_server.url,
        TODO_JWT_USER_CLAIM="uid",
    )
    client = TestClient(create_app(settings, database), raise_server_exceptions=False)
    key = key_server.keys[0]
    made = _post(client, f"Bearer {key.sign(claims(uid='u-42'))}")
    assert made.json()["user_id"] == str(owner_id(ISSUER, "u-42"))
    problem(_post(client, f"Bearer {key.sign(claims(uid=None))}"), 401, "INVALID_TOKEN")


@pytest.mark.req("FR-102", "FR-103")
def test_a_remembered_token_still_expires(
    jwks_app: TestClient, key_server: KeyServer, admin_engine: Engine
) -> None:
    token = key_server.keys[0].sign(claims(exp=int(time.time()) + 2))
    assert jwks_app.get(TODOS, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    time.sleep(2.5)
    answer = jwks_app.get(TODOS, headers={"Authorization": f"Bearer {token}"})
    problem(answer, 401, "TOKEN_EXPIRED")


@pytest.mark.req("FR-104")
def test_an_unknown_kid_refetches_the_keys_at_most_once_a_minute(
    jwks_app: TestClient, key_server: KeyServer
) -> None:
    first, *others = key_server.keys
    assert _post(jwks_app, f"Bearer {first.sign(claims())}").status_code == 201
    assert key_server.fetches == 1

    rotated = SigningKey.new("EdDSA")
    key_server.publish(rotated, *others)  # the auth server rotated its key
    answer = _post(jwks_app, f"Bearer {rotated.sign(claims())}")
    assert answer.status_code == 201, answer.text
    assert key_server.fetches == 2

    # Within the minute, unknown kids are refused from the keys already held.
    for _ in range(5):
        problem(
            _post(jwks_app, f"Bearer {SigningKey.new('EdDSA').sign(claims())}"),
            401,
            "INVALID_TOKEN",
        )
    newer = SigningKey.new("EdDSA")
    key_server.publish(newer, rotated, *others)
    problem(_post(jwks_app, f"Bearer {newer.sign(claims())}"), 401, "INVALID_TOKEN")
    assert key_server.fetches == 2
    # Keys already held keep working.
    assert _post(jwks_app, f"Bearer {rotated.sign(claims(sub='u2'))}").status_code == 201


@pytest.mark.req("FR-104", "FR-006")
def test_keys_out_of_reach_and_none_cached_is_503_never_401(
    jwks_app: TestClient, key_server: KeyServer, admin_engine: Engine
) -> None:
    key_server.stop()
    token = key_server.keys[0].sign(claims())
    for _ in range(2):
        started = time.monotonic()
        answer = _post(jwks_app, f"Bearer {token}")
        body = problem(answer, 503, "SERVICE_UNAVAILABLE")
        assert int(answer.headers["retry-after"]) >= 1
        assert time.monotonic() - started < 5
        assert key_server.url not in answer.text and "Traceback" not in body["detail"]
    _nothing_written(admin_engine)

    key_server.start()
    answers: list[Response] = []

    def answered() -> bool:
        answers.append(_post(jwks_app, f"Bearer {token}"))
        return answers[-1].status_code != 503

    until(answered, 10, "the service to fetch the keys once they are back", every=0.2)
    assert answers[-1].status_code == 201, answers[-1].text


@pytest.mark.req("FR-104")
def test_keys_already_held_keep_working_while_the_key_server_is_down(
    jwks_app: TestClient, key_server: KeyServer
) -> None:
    key = key_server.keys[0]
    assert _post(jwks_app, f"Bearer {key.sign(claims())}").status_code == 201
    key_server.stop()
    assert _post(jwks_app, f"Bearer {key.sign(claims(sub='another'))}").status_code == 201
    # An unknown kid cannot be looked up: the keys cannot be had, so 503, not 401.
    answer = _post(jwks_app, f"Bearer {SigningKey.new('EdDSA').sign(claims())}")
    problem(answer, 503, "SERVICE_UNAVAILABLE")


@pytest.fixture
def hs256_app(postgres_url: str, database: Database, admin_engine: Engine) -> TestClient:
    settings = make_settings(postgres_url, TODO_AUTH_MODE="jwt", TODO_JWT_SECRET=SECRET)
    return TestClient(create_app(settings, database), raise_server_exceptions=False)


@pytest.mark.req("FR-102")
def test_hs256_with_a_shared_secret(hs256_app: TestClient, admin_engine: Engine) -> None:
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    made = _post(hs256_app, f"Bearer {token}")
    assert made.status_code == 201, made.text
    assert made.json()["user_id"] == str(owner_id(ISSUER, "user-7"))
    wrong = jwt.encode(claims(), SECRET + "!", algorithm="HS256")
    problem(_post(hs256_app, f"Bearer {wrong}"), 401, "INVALID_TOKEN")
    asymmetric = SigningKey.new("EdDSA").sign(claims())
    problem(_post(hs256_app, f"Bearer {asymmetric}"), 401, "INVALID_TOKEN")
    problem(
        _post(hs256_app, f"Bearer {_hs256_by_hand({'alg': 'none'}, claims(), b'')}"),
        401,
        "INVALID_TOKEN",
    )


@pytest.mark.req("FR-102")
@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"TODO_JWT_SECRET": "too short: 31 bytes, just under"}, "at least 32 bytes"),
        ({}, "exactly one of TODO_JWT_JWKS_URL and TODO_JWT_SECRET"),
        (
            {"TODO_JWT_SECRET": SECRET, "TODO_JWT_JWKS_URL": "http://127.0.0.1:9/jwks"},
            "exactly one of",
        ),
    ],
)
def test_a_bad_key_configuration_refuses_to_start(
    tmp_path: Path, postgres_url: str, env: dict[str, str], says: str
) -> None:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("TODO_", "NEON_"))}
    done = subprocess.run(
        [str(EXECUTABLE), "serve", "--port", "9"],
        env={**inherited, "NEON_DATABASE_URL": postgres_url, "TODO_AUTH_MODE": "jwt", **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert says in done.stderr
    assert "Traceback" not in done.stderr
    if "TODO_JWT_SECRET" in env:
        assert env["TODO_JWT_SECRET"] not in done.stdout + done.stderr
