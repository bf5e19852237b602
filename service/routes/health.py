"""Liveness (the process) and readiness (the database answers)."""

from fastapi import APIRouter, Request
from starlette.responses import Response

from service.db import Database

router = APIRouter(prefix="/health")

_OK = b'{"status":"ok"}'


@router.api_route("/live", methods=["GET", "HEAD"])
async def live() -> Response:
    return Response(_OK, media_type="application/json")


@router.api_route("/ready", methods=["GET", "HEAD"])
async def ready(request: Request) -> Response:
    db: Database = request.app.state.db
    await db.ping()
    return Response(_OK, media_type="application/json")
