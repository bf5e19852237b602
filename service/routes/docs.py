"""The hand-written contract, served as is, and Swagger UI for it from local assets."""

from importlib import resources
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter
from starlette.responses import FileResponse, HTMLResponse, Response

router = APIRouter()

SPEC: bytes = (resources.files("service") / "openapi.yaml").read_bytes()
_ASSETS = Path(fastapi_offline.__file__).parent / "static"

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Todo Service API</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "/openapi.yaml", dom_id: "#swagger-ui", deepLinking: true});
  </script>
</body>
</html>
"""


@router.api_route("/openapi.yaml", methods=["GET", "HEAD"])
async def openapi_document() -> Response:
    return Response(SPEC, media_type="application/yaml")


@router.api_route("/docs", methods=["GET", "HEAD"])
async def docs() -> HTMLResponse:
    return HTMLResponse(_PAGE)


@router.api_route("/docs/swagger-ui-bundle.js", methods=["GET", "HEAD"])
async def docs_script() -> FileResponse:
    return FileResponse(_ASSETS / "swagger-ui-bundle.js", media_type="text/javascript")


@router.api_route("/docs/swagger-ui.css", methods=["GET", "HEAD"])
async def docs_style() -> FileResponse:
    return FileResponse(_ASSETS / "swagger-ui.css", media_type="text/css")
