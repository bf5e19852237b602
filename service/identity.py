"""Who is calling. Today the X-User-ID header says so; a later auth layer replaces
`current_user` and nothing else."""

import re
import uuid
from typing import Annotated, NewType

from fastapi import Depends, Request

from service.errors import InvalidUserContext, MissingUserContext

UserId = NewType("UserId", uuid.UUID)

USER_HEADER = "x-user-id"
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def parse_uuid(value: str) -> uuid.UUID | None:
    """Only the canonical 8-4-4-4-12 form, in any letter case: `uuid.UUID` alone would
    also take braces, URNs and unhyphenated hex, which the contract does not."""
    if not _UUID.fullmatch(value):
        return None
    return uuid.UUID(value)


async def current_user(request: Request) -> UserId:
    # async only so FastAPI runs it inline: a plain `def` dependency costs a thread hop.
    value = request.headers.get(USER_HEADER, "")
    if not value:
        raise MissingUserContext(
            "The X-User-ID header is required and must hold the caller's user id (a UUID)."
        )
    user = parse_uuid(value)
    if user is None:
        raise InvalidUserContext(
            "The X-User-ID header must be a UUID such as 5f0c1e1e-8a55-4c1e-9a0e-2f1b5d9c7a10."
        )
    return UserId(user)


CurrentUser = Annotated[UserId, Depends(current_user)]
