"""The requirements the kit answers for (the project's contracts/requirements.yaml,
packaged with the kit), and the contract it checks against."""

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml


@dataclass(frozen=True)
class Requirement:
    id: str
    text: str
    since: str
    unobservable: str | None


# libyaml's parser where PyYAML was built with it: the pure-Python one spent most of a
# short run's CPU on this file and the contract (0.5 of 0.75 s).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(raw: str | bytes) -> Any:
    """YAML as yaml.safe_load reads it: the same types, the same errors."""
    return yaml.load(raw, Loader=_LOADER)


@lru_cache(maxsize=1)
def requirements() -> tuple[Requirement, ...]:
    raw = (resources.files("todo_conformance") / "requirements.yaml").read_text()
    return tuple(
        Requirement(r["id"], r["text"], str(r["since"]), r.get("unobservable"))
        for r in load_yaml(raw)["requirements"]
    )


def version_tuple(version: str) -> tuple[int, ...]:
    """`1.1.0` or `1.1` as (1, 1), for comparing a contract's version with an id's."""
    numbers = []
    for part in version.split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit())
        numbers.append(int(digits or 0))
    return tuple(numbers)


# The path a version brought, for a document numbered as that version (or later) that
# does not declare it: its ids are not applicable there either.
BROUGHT = {"2.0": "/api/v2/todos", "2.1": "/api/v2/todos/summary"}


@dataclass(frozen=True)
class Contract:
    """The OpenAPI document checked against: the one the target serves at
    /openapi.yaml, or the one given with --contract."""

    document: dict[str, Any]
    sha256: str
    source: str

    @classmethod
    def parse(cls, raw: bytes, source: str) -> "Contract":
        """ValueError when `raw` is not an OpenAPI document (an HTML page is not one,
        even where it reads as YAML)."""
        try:
            document = load_yaml(raw)
        except yaml.YAMLError:
            document = None
        if (
            not isinstance(document, dict)
            or not isinstance(document.get("paths"), dict)
            or not str(document.get("openapi", "")).startswith("3.")
        ):
            raise ValueError(f"{source} is not an OpenAPI 3 document")
        return cls(document, hashlib.sha256(raw).hexdigest(), source)

    @property
    def version(self) -> str:
        return str(self.document.get("info", {}).get("version", "0"))

    def at_least(self, version: str) -> bool:
        return version_tuple(self.version) >= version_tuple(version)

    def lacks(self, since: str) -> str | None:
        """Why this contract lacks what `since` brought, when its version has it but its
        paths do not (None otherwise)."""
        path = BROUGHT.get(since)
        if path is None or path in self.document.get("paths", {}):
            return None
        return f"the served contract ({self.version}) declares no {path}, which {since} brought"

    def declares(self, method: str, path: str) -> bool:
        return method.lower() in self.document.get("paths", {}).get(path, {})
