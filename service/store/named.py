"""The statements the store hands the Database, by their names in the code: what the
SQL audit knows may be sent, and what metrics and traces call a statement (its text is
never a label)."""

from types import ModuleType

from service import db, store
from service.store import bulk, keys, lists, summary, todos


def statements(module: ModuleType) -> dict[str, str]:
    """A module's statements, by name: the public upper-case string constants it
    defines (the private ones, and those it imports from the store's package, are parts
    the statements are composed of)."""
    return {
        f"{module.__name__}.{name}": value
        for name, value in vars(module).items()
        if name.isupper()
        and not name.startswith("_")
        and isinstance(value, str)
        and getattr(store, name, None) is not value
    }


def names() -> dict[str, str]:
    """Each text the Database may be handed, and its short name (`todos.GET`); a claim
    that sweeps expired keys first goes by the claim's name."""
    found = {
        **statements(todos),
        **statements(keys),
        **statements(lists),
        **statements(summary),
        **statements(bulk),
    }
    found.pop("service.store.keys.SWEEP")
    named = {text: name.removeprefix("service.store.") for name, text in found.items()}
    named[keys.SWEEP + keys.CLAIM] = named[keys.CLAIM]
    return named | {db.PING: "db.PING", db.CURSOR_KEY: "db.CURSOR_KEY"}
