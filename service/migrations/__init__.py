"""Alembic migrations, shipped inside the package and run by `todo-service migrate`.
Alembic is imported by what runs them only: a worker asks `newest()` without it."""

import re
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config

_REVISION = re.compile(r'^revision = "(\w+)"$', re.MULTILINE)
_DOWN_REVISION = re.compile(r'^down_revision = "(\w+)"$', re.MULTILINE)


def alembic_config(url: str) -> "Config":
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "service:migrations")
    config.attributes["url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def newest() -> str:
    """The revision the newest migration brings the schema to: the one no other
    migration comes after (each file names its `revision` and `down_revision`)."""
    revisions: set[str] = set()
    followed: set[str] = set()
    for file in (resources.files("service") / "migrations" / "versions").iterdir():
        if file.name.endswith(".py"):
            text = file.read_text()
            revisions.update(_REVISION.findall(text))
            followed.update(_DOWN_REVISION.findall(text))
    [head] = revisions - followed
    return head
