"""Response helpers shared by the routes."""

from typing import Any

import orjson
from fastapi import Request
from starlette.responses import Response

from service.db import Database


def json_response(
    content: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(content),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def json_text(body: str, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A body PostgreSQL already wrote as JSON."""
    return Response(body, status_code=status_code, headers=headers, media_type="application/json")


def database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db
