"""Stamps the wheel with the commit it is built from (service/COMMIT, which
`todo_build_info` reports): `git rev-parse HEAD` in the checkout, or `unknown` when the
source is not one (an sdist, an archive)."""

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CommitStamp(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        try:
            found = subprocess.run(
                ["git", "rev-parse", "HEAD"],
                cwd=self.root,
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
            commit = found.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            commit = "unknown"
        self._stamps = Path(tempfile.mkdtemp(prefix="todo-service-build-"))
        stamp = self._stamps / "COMMIT"
        stamp.write_text(commit + "\n")
        build_data["force_include"][str(stamp)] = "service/COMMIT"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        shutil.rmtree(self._stamps, ignore_errors=True)
