"""Edits to the site file that keep the operator's comments and layout (tomlkit).

Every edit is checked as a whole file, exactly as ``serve`` will load it, before the file
is replaced; the replacement is atomic and keeps the file private (mode 0600).
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, Table

from headcount_collector.commands._common import unknown_site
from headcount_collector.config import parse_sites, token_digest
from headcount_collector.errors import ConfigError

__all__ = ["SiteFile", "new_token"]


def new_token(kind: str) -> str:
    """A fresh write (``hcw_``) or read (``hcr_``) token."""
    return f"hc{kind[0]}_" + secrets.token_urlsafe(24)


class SiteFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(str(path), "-", f"cannot read the file: {exc.strerror}") from None
        parse_sites(text, str(path))  # refuse to edit a file serve would refuse
        self.document = tomlkit.parse(text)

    @property
    def sites(self) -> AoT:
        sites = self.document["sites"]
        assert isinstance(sites, AoT)  # parse_sites checked [[sites]] already
        return sites

    def _ids(self) -> list[str]:
        return [str(table.get("id")) for table in self.sites if isinstance(table, Table)]

    def find(self, site_id: str) -> Table:
        for table in self.sites:
            if isinstance(table, Table) and table.get("id") == site_id:
                return table
        raise unknown_site(self.path, site_id, self._ids())

    def set_token(self, site: Table, kind: str) -> str:
        token = new_token(kind)
        site[f"{kind}_token_sha256"] = token_digest(token).hex()
        return token

    def add(self, fields: dict[str, Any]) -> None:
        table = tomlkit.table()
        for key, value in fields.items():
            table.add(key, value)
        self.sites.append(table)

    def remove(self, site_id: str) -> None:
        sites = self.sites
        for index, table in enumerate(sites):
            if table.get("id") == site_id:
                del sites[index]
                return
        raise unknown_site(self.path, site_id, self._ids())

    def save(self) -> None:
        text = tomlkit.dumps(self.document)
        parse_sites(text, str(self.path))  # the edited file must load, or nothing changes
        mode = self.path.stat().st_mode & 0o777 if self.path.exists() else 0o600
        handle, temporary = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
        )
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temporary, mode & 0o700 or 0o600)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
