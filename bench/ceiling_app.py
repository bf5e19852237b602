"""The framework's ceiling: FastAPI answering a constant, served exactly as the service."""

from fastapi import FastAPI
from starlette.responses import Response

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

_BODY = b'{"status":"ok"}'


@app.get("/constant")
async def constant() -> Response:
    return Response(_BODY, media_type="application/json")
