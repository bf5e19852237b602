"""Liveness (the process) and readiness (the database answers)."""

from fastapi import APIRouter, Request
from starlette.responses import Response

from service.routes.responses import database, json_response

router = APIRouter(prefix="/health")


@router.get("/live")
async def live() -> Response:
    return json_response({"status": "ok"})


@router.get("/ready")
async def ready(request: Request) -> Response:
    await database(request).ping()
    return json_response({"status": "ok"})
