"""Liveness (the process) and readiness (the database answers)."""

from fastapi import APIRouter
from starlette.responses import Response

from service.routes.responses import Db, json_response

router = APIRouter(prefix="/health")


@router.get("/live")
async def live() -> Response:
    return json_response({"status": "ok"})


@router.get("/ready")
async def ready(db: Db) -> Response:
    await db.call(db.ping)
    return json_response({"status": "ok"})
