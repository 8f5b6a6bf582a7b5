"""Which store a daemon uses, and how it is named where people can see it.

The store comes from ``--store``, then ``$SESSIONMEM_STORE``, then ``sessionmem.toml``
at the project root (``[store] url``); the project key from ``--project-key``, then
``$SESSIONMEM_PROJECT_KEY``, then the toml's ``[store] project_key``, then the git
``origin`` URL normalised to ``host/owner/repo``. Absent a store, or ``sqlite`` (which
overrides the toml): the SQLite file.

A URL's password is never shown: :func:`mask` (sessionmem.storename, which clients
share) is what logs, ``hello``, ``stats`` and error messages print. No driver is
imported here.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

from sessionmem.storename import SQLITE, is_postgres, mask

TOML = "sessionmem.toml"


class StoreChoiceError(Exception):
    """The store options cannot be used as given; the message says how to fix them."""


def normalise_origin(origin: str) -> str | None:
    """``git@github.com:me/repo.git``, ``https://user@github.com/me/repo`` ... ->
    ``github.com/me/repo`` (no scheme, user, port or ``.git``)."""
    origin = origin.strip()
    m = re.match(r"^(?:[\w+.-]+://)?(?:[^@/]+@)?([^/:]+)(?::\d+)?[:/](.+?)(?:\.git)?/?$", origin)
    if not m:
        return None
    return f"{m.group(1).lower()}/{m.group(2)}"


def git_origin_key(root: Path) -> str | None:
    try:
        r = subprocess.run(["git", "-C", str(root), "config", "--get", "remote.origin.url"],
                           capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return normalise_origin(r.stdout) if r.returncode == 0 and r.stdout.strip() else None


@dataclass(frozen=True)
class StoreChoice:
    url: str | None  # None: the SQLite file
    project_key: str | None


def choose(root: Path, store: str | None, project_key: str | None, environ: dict[str, str]) -> StoreChoice:
    """The store and project key the options, the environment and the project's
    sessionmem.toml name, in that order."""
    table: dict[str, object] = {}
    toml = root / TOML
    if toml.is_file():
        try:
            loaded = tomllib.loads(toml.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise StoreChoiceError(f"cannot read {toml}: {e}") from None
        section = loaded.get("store", {})
        if not isinstance(section, dict):
            raise StoreChoiceError(f"{toml}: [store] must be a table")
        table = section
    url = store or environ.get("SESSIONMEM_STORE") or _str(table, "url", toml)
    key = project_key or environ.get("SESSIONMEM_PROJECT_KEY") or _str(table, "project_key", toml)
    if not url or url == SQLITE:  # "sqlite": the SQLite file, whatever sessionmem.toml says
        return StoreChoice(None, key)
    if not is_postgres(url):
        raise StoreChoiceError(f"unknown store {mask(url)!r}: give a postgresql:// URL, or sqlite (or none) "
                               f"for the SQLite file")
    if not key:
        key = git_origin_key(root)
    if not key:
        raise StoreChoiceError(
            f"a PostgreSQL store needs a project key, and {root} has no git origin to derive one from: "
            f"give --project-key KEY, $SESSIONMEM_PROJECT_KEY, or project_key under [store] in {toml}")
    return StoreChoice(url, key)


def _str(table: dict[str, object], name: str, toml: Path) -> str | None:
    value = table.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise StoreChoiceError(f"{toml}: [store] {name} must be a string")
    return value
