"""Page cursors: where the next page starts, opaque and tamper-evident.

A cursor holds the last listed todo's position in the list order (created_at in
microseconds, then id) and an HMAC-SHA256 over it with a key kept in the database, so
any process behind the same database reads any other's cursors, and a cursor that was
changed, truncated or made up is refused. A position is not a permission: the page
statement is restricted to the caller like every other, so a cursor used by another
user only ever reaches that user's own todos."""

import base64
import binascii
import hashlib
import hmac
import struct
import uuid
from dataclasses import dataclass

from service.store.todos import Position

_VERSION = 1
_PAYLOAD = struct.Struct(">Bq16s")
_MAC_BYTES = 16


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


def decode(key: bytes, cursor: str) -> Position | None:
    """The position, or None for anything this service did not sign."""
    if not cursor.isascii():
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        return None
    # Only the one spelling this service writes: base64 decoding alone would skip
    # stray characters and accept other spellings of the same bytes.
    if len(raw) != _PAYLOAD.size + _MAC_BYTES or _text(raw) != cursor:
        return None
    payload, mac = raw[: _PAYLOAD.size], raw[_PAYLOAD.size :]
    if not hmac.compare_digest(mac, _mac(key, payload)):
        return None
    version, created_at_us, todo_id = _PAYLOAD.unpack(payload)
    if version != _VERSION:
        return None
    return Position(created_at_us, uuid.UUID(bytes=todo_id))
