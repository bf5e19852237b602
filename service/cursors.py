"""Page cursors: where the next page starts, opaque and tamper-evident.

A cursor holds the last listed todo's position in the list order (created_at in
microseconds, then id) and an HMAC-SHA256 over it with a key kept in the database, so
any process behind the same database reads any other's cursors, and a cursor that was
changed, truncated or made up is refused. A position is not a permission: the page
statement is restricted to the caller like every other, so a cursor used by another
user only ever reaches that user's own todos.

A 2.0 cursor (version 2) also holds the sort key of that todo, and a digest of the
filters and sort it was issued for: given with any others, it is refused like one made
up, since the place it names belongs to another order."""

import base64
import binascii
import hashlib
import hmac
import struct
import uuid
from dataclasses import dataclass

from service.store import Position

_VERSION = 1
_PAYLOAD = struct.Struct(">Bq16s")
_MAC_BYTES = 16
_VERSION_2 = 2
# version, the binding's digest, created_at, id, whether a key follows (then the key).
_PAYLOAD_2 = struct.Struct(">B8sq16s?")


@dataclass(frozen=True, slots=True)
class PageRequest:
    """A page asked for: at most `limit` todos, after `after` (None: from the start)."""

    limit: int
    after: Position | None


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_BYTES]


def _text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def encode(key: bytes, position: Position) -> str:
    payload = _PAYLOAD.pack(_VERSION, position.created_at_us, position.todo_id.bytes)
    return _text(payload + _mac(key, payload))


def _signed(key: bytes, cursor: str) -> bytes | None:
    """The payload of a cursor this service signed, or None."""
    if not cursor.isascii():
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        return None
    # Only the one spelling this service writes: base64 decoding alone would skip
    # stray characters and accept other spellings of the same bytes.
    if len(raw) <= _MAC_BYTES or _text(raw) != cursor:
        return None
    payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(key, payload)):
        return None
    return payload


def decode(key: bytes, cursor: str) -> Position | None:
    """The position, or None for anything this service did not sign."""
    payload = _signed(key, cursor)
    if payload is None or len(payload) != _PAYLOAD.size:
        return None
    version, created_at_us, todo_id = _PAYLOAD.unpack(payload)
    if version != _VERSION:
        return None
    return Position(created_at_us, uuid.UUID(bytes=todo_id))


def binding(*asked: object) -> bytes:
    """The digest a 2.0 cursor carries of the filters and sort it was issued for."""
    return hashlib.sha256(repr(asked).encode()).digest()[:8]


def encode_v2(key: bytes, position: Position, bound: bytes) -> str:
    kept = b"" if position.key is None else position.key.encode()
    payload = _PAYLOAD_2.pack(
        _VERSION_2, bound, position.created_at_us, position.todo_id.bytes, position.key is not None
    )
    return _text(payload + kept + _mac(key, payload + kept))


def decode_v2(key: bytes, cursor: str, bound: bytes) -> Position | None:
    """The position, or None for anything this service did not sign for these filters
    and this sort."""
    payload = _signed(key, cursor)
    if payload is None or len(payload) < _PAYLOAD_2.size:
        return None
    version, its_binding, created_at_us, todo_id, keyed = _PAYLOAD_2.unpack(
        payload[: _PAYLOAD_2.size]
    )
    if version != _VERSION_2 or not hmac.compare_digest(its_binding, bound):
        return None
    kept = payload[_PAYLOAD_2.size :].decode() if keyed else None
    return Position(created_at_us, uuid.UUID(bytes=todo_id), kept)
