"""The service with its second wall down, only to measure what the wall costs.

Requests keep the statement timeout but neither switch to the request role nor name
the caller: on the embedded PostgreSQL they run as the superuser, which row-level
security does not bind. Everything else is the service as shipped. Served with
`uvicorn --factory without_row_security:build_app`.
"""

from service import db
from service.worker import build_app

db.REQUEST_CONTEXT = """\
SELECT set_config('statement_timeout', %(_request_timeout)s, true),
       set_config('TimeZone', 'UTC', true);
"""

__all__ = ["build_app"]
