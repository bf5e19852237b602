"""Bearer JWTs verified with PyJWT, against keys from a JWKS URL or a shared HS256
secret. Nothing here is hand-rolled cryptography: PyJWT checks signatures and claims;
this module decides which key and which one algorithm a token may use, keeps the key
set fresh, and remembers tokens already verified until they expire."""

import asyncio
import logging
import threading
import time
from dataclasses import dataclass

import jwt
from jwt import PyJWK, PyJWKClient

from service import telemetry
from service.errors import InvalidToken, ServiceUnavailable, TokenExpired
from service.settings import Settings

log = logging.getLogger("service.tokens")

# The algorithms a published key may be used with: each key type has exactly one, so a
# token never chooses its own (no `none`, no HS256 checked against a public key).
ASYMMETRIC = frozenset({"EdDSA", "ES256", "RS256"})
SHARED_SECRET = "HS256"

# An unknown `kid` may mean the keys were rotated; refetch for it at most this often.
ROTATION_COOLDOWN_SECONDS = 60.0
# Keys are refetched this often anyway, so a key withdrawn by the auth server is
# dropped; while the server cannot be reached the keys already held keep working.
KEYS_MAX_AGE_SECONDS = 600.0
VERIFIED_TOKENS_KEPT = 4096


@dataclass(frozen=True, slots=True)
class Verified:
    """Who a verified token names, and until when it may be used."""

    issuer: str
    subject: str
    expires_at: float


class RemoteKeys:
    """The auth server's JWKS, fetched on first use (PyJWKClient fetches and parses).
    Thread-safe; every call may block on the network for at most the fetch timeout."""

    def __init__(self, url: str, timeout: float, retry_after: int) -> None:
        self._client = PyJWKClient(url, cache_jwk_set=False, timeout=timeout)
        self._retry_after = retry_after
        self._keys: dict[str | None, PyJWK] = {}
        self._fetched_at: float | None = None
        self._refetched_at: float | None = None
        self._failed_at: float | None = None
        self._lock = threading.Lock()

    def key_for(self, kid: str | None) -> PyJWK:
        with self._lock:
            now = time.monotonic()
            key = self._keys.get(kid)
            fresh = self._fetched_at is not None and now - self._fetched_at < KEYS_MAX_AGE_SECONDS
            if key is not None and fresh:
                return key
            if key is None and fresh:
                if self._refetched_at is not None and (
                    now - self._refetched_at < ROTATION_COOLDOWN_SECONDS
                ):
                    raise _unknown_key()
                self._refetched_at = now
            fetched = self._fetch(now)
            key = self._keys.get(kid)
            if key is not None:
                return key
            if not fetched:
                raise self._unavailable()
            raise _unknown_key()

    def _fetch(self, now: float) -> bool:
        # A failing key server is asked again only after the 503's Retry-After, so a
        # flood of requests does not become a flood of fetches that each wait out the
        # timeout in turn.
        if self._failed_at is not None and now - self._failed_at < self._retry_after:
            return False
        try:
            found = self._client.get_jwk_set()
        except jwt.PyJWKClientError as error:
            self._failed_at = now
            log.warning("the JWKS could not be fetched", extra={"error": type(error).__name__})
            telemetry.listener.keys_fetched("failed")
            return False
        except jwt.PyJWKSetError:
            self._failed_at = now
            log.warning("the JWKS holds no usable key")
            telemetry.listener.keys_fetched("no_usable_key")
            return False
        telemetry.listener.keys_fetched("ok")
        usable = [
            key
            for key in found.keys
            if key.algorithm_name in ASYMMETRIC and key.public_key_use in {"sig", None}
        ]
        self._keys = {key.key_id: key for key in usable}
        if len(usable) == 1:
            # A token without `kid` may use the only key there is.
            self._keys.setdefault(None, usable[0])
        self._fetched_at, self._failed_at = now, None
        return True

    def _unavailable(self) -> ServiceUnavailable:
        return ServiceUnavailable(
            "The keys that verify tokens cannot be fetched right now; retry shortly.",
            retry_after=self._retry_after,
            cause="key_server",
        )


def _expired() -> TokenExpired:
    return TokenExpired("The token has expired; get a new one from the auth server.")


def _unknown_key() -> InvalidToken:
    return InvalidToken("The token is signed with a key the auth server does not publish.")


class TokenVerifier:
    """Verifies a bearer token, or raises InvalidToken, TokenExpired or (keys out of
    reach) ServiceUnavailable."""

    def __init__(self, settings: Settings) -> None:
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._user_claim = settings.jwt_user_claim
        self._leeway = settings.jwt_leeway_seconds
        self._secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
        self._keys = (
            RemoteKeys(
                settings.jwt_jwks_url, settings.jwks_timeout_seconds, settings.retry_after_seconds
            )
            if settings.jwt_jwks_url
            else None
        )
        self._verified: dict[tuple[str, str | None], Verified] = {}
        self._verified_lock = threading.Lock()

    async def verify(self, token: str, audience: str | None = None) -> Verified:
        """`audience`, when given, is the one the token must name in place of
        TODO_JWT_AUDIENCE (/mcp takes only tokens meant for itself)."""
        key = (token, audience)
        known = self._verified.get(key)
        if known is None:
            # Key fetches block; a token is verified once, then remembered.
            known = await asyncio.get_running_loop().run_in_executor(
                None, self._verify, token, audience or self._audience
            )
            self._remember(key, known)
        if known.expires_at <= time.time() - self._leeway:
            raise _expired()
        return known

    def _remember(self, key: tuple[str, str | None], verified: Verified) -> None:
        with self._verified_lock:
            if len(self._verified) >= VERIFIED_TOKENS_KEPT:
                self._verified.pop(next(iter(self._verified)))
            self._verified[key] = verified

    def _key(self, header: dict[str, object]) -> tuple[PyJWK | str, str]:
        """The one key this token may be checked with, and its one algorithm."""
        algorithm = header.get("alg")
        if self._keys is None:
            assert self._secret is not None
            key: PyJWK | str = self._secret
            expected = SHARED_SECRET
        else:
            kid = header.get("kid")
            if kid is not None and not isinstance(kid, str):
                raise InvalidToken("The token's key id (kid) must be a string.")
            jwk = self._keys.key_for(kid)
            key, expected = jwk, jwk.algorithm_name
        if algorithm != expected:
            raise InvalidToken(f"The token must be signed with {expected}.")
        return key, expected

    def _verify(self, token: str, audience: str | None) -> Verified:
        try:
            key, algorithm = self._key(jwt.get_unverified_header(token))
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp"], "verify_aud": audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired(
                "The token has expired; get a new one from the auth server."
            ) from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("The token is not valid yet.") from None
        except jwt.MissingRequiredClaimError as error:
            raise InvalidToken(f"The token has no `{error.claim}` claim.") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("The token's issuer is not the one this service trusts.") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("The token is not meant for this service (audience).") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("The token's signature does not verify.") from None
        except jwt.PyJWTError:
            raise InvalidToken("The token is not a well-formed, signed JWT.") from None
        subject = claims.get(self._user_claim)
        if not isinstance(subject, str) or not subject:
            raise InvalidToken(f"The token has no `{self._user_claim}` claim naming the user.")
        issuer = claims.get("iss", "")
        if not isinstance(issuer, str):
            raise InvalidToken("The token's issuer (iss) must be a string.")
        return Verified(issuer, subject, float(claims["exp"]))
