"""The environment the tests' child processes start with: this process's as the run
began, with what each child needs changed, never `os.environ` as it stands, where a
test may have set a variable of its own for a moment (monkeypatch.setenv), and a
`serve` started at that moment would inherit it."""

import os

_AT_START: dict[str, str] = dict(os.environ)


def capture() -> None:
    """Taken again once the run's own variables are set, before any test runs
    (conftest.py's pytest_configure; tests/job_runner.py as it starts)."""
    _AT_START.clear()
    _AT_START.update(os.environ)


def child(**changes: str | None) -> dict[str, str]:
    """The environment as the run began, `changes` made (None takes a variable out)."""
    env = dict(_AT_START)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env
