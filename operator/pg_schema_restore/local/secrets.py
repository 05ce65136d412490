"""Secrets in a local directory: one JSON file per secret, mode 0600."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ddl_job.errors import ProviderError

_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


class LocalSecrets:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)

    def _path(self, secret_id: str) -> Path:
        if not _ID.match(secret_id):
            raise ProviderError("InvalidSecret", f"bad local secret id {secret_id!r}")
        return self.directory / f"{secret_id}.json"

    def write(self, secret_id: str, value: dict[str, Any]) -> str:
        path = self._path(secret_id)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(value, fh)
        return secret_id

    def read(self, secret_id: str) -> dict[str, Any]:
        try:
            return json.loads(self._path(secret_id).read_text())
        except FileNotFoundError:
            raise ProviderError("SecretNotFound", f"secret {secret_id} not found") from None

    def delete(self, secret_id: str) -> bool:
        path = self._path(secret_id)
        existed = path.exists()
        path.unlink(missing_ok=True)
        return existed

    def ids(self) -> list[str]:
        return sorted(p.stem for p in self.directory.glob("*.json"))
