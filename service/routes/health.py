"""Liveness (the process) and readiness (the database answers, and the process is not
shutting down)."""

from fastapi import APIRouter, Request
from starlette.responses import Response

from service import draining
from service.db import Database
from service.errors import ServiceUnavailable

router = APIRouter(prefix="/health")

_OK = b'{"status":"ok"}'


@router.api_route("/live", methods=["GET", "HEAD"])
async def live() -> Response:
    return Response(_OK, media_type="application/json")


@router.api_route("/ready", methods=["GET", "HEAD"])
async def ready(request: Request) -> Response:
    db: Database = request.app.state.db
    if draining.started.is_set():
        raise ServiceUnavailable(
            "This process is shutting down and takes no new work; retry on another.",
            retry_after=db.retry_after,
            cause="draining",
        )
    await db.ping()
    return Response(_OK, media_type="application/json")
