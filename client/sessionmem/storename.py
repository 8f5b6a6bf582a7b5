"""A store's name as people and clients see it, never with its password; and the check
that a client told a store talks to a daemon serving that store.

The daemon names its store in ``hello`` (``store``: ``"sqlite"`` for the project's
SQLite file, else the PostgreSQL URL with its password masked; ``projectKey``). A
client whose ``$SESSIONMEM_STORE`` names another store refuses to use that daemon
(:func:`check_store`): its writes would land in a store it did not mean. Both sides are
compared without their passwords (:func:`identity`), so no password travels and a
password given one way (the URL) or another (``PGPASSWORD``, ``~/.pgpass``) names the
same store. Pure: no I/O, no driver.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from . import errors
from . import protocol as p

SQLITE = "sqlite"  # $SESSIONMEM_STORE's (and hello's) name for the project's SQLite file
_MASK = "***"


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def mask(text: str, url: str | None = None) -> str:
    """``text`` (a URL, or a message that may quote ``url``) with any password
    replaced by ***: the user:password@ part and a ``password=`` parameter."""
    secrets: list[str] = []
    for u in {text, url} - {None}:
        assert u is not None
        try:
            parts = urlsplit(u)
        except ValueError:
            continue
        if parts.password:
            secrets.append(parts.password)
        secrets += [v for k, v in parse_qsl(parts.query) if k == "password" and v]
    if is_postgres(text):
        parts = urlsplit(text)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if parts.password is not None or any(k == "password" for k, _ in pairs):
            netloc = parts.netloc
            if parts.password is not None:
                user, _, host = netloc.rpartition("@")
                netloc = f"{user.partition(':')[0]}:{_MASK}@{host}"
            query = urlencode([(k, _MASK if k == "password" else v) for k, v in pairs], safe="/*")
            # "//" kept by hand: urlunsplit drops it when the host part is empty.
            text = f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "") + (
                f"#{parts.fragment}" if parts.fragment else "")
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, _MASK)
    return text


def identity(store: str) -> str:
    """What names a store, whoever gives its password how: user, host, port and database
    (from the URL's parts or its ``user``/``host``/``port``/``dbname`` parameters, as libpq
    reads them) and the other parameters in order, without any password (a masked one
    included); ``postgres://`` is ``postgresql://``. ``sqlite`` stays as it is."""
    if not is_postgres(store):
        return store
    try:
        parts = urlsplit(store)
        port = parts.port
    except ValueError:
        return store  # not a URL libpq would take either: compared as written
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    params.pop("password", None)
    user = params.pop("user", None) or unquote(parts.username or "")
    host = params.pop("host", None) or unquote(parts.hostname or "")
    port_ = params.pop("port", None) or (str(port) if port is not None else "")
    dbname = params.pop("dbname", None) or unquote(parts.path.lstrip("/"))
    rest = urlencode(sorted(params.items()), safe="/*")
    return f"postgresql://{user}@{host}:{port_}/{dbname}" + (f"?{rest}" if rest else "")


def shown(hello: p.HelloResult) -> str:
    """The daemon's store as a message names it."""
    if hello.store == SQLITE:
        return f"the SQLite file {hello.dbPath}"
    return f"{hello.store} (project key {hello.projectKey!r})"


def check_store(hello: p.HelloResult, environ: Mapping[str, str]) -> None:
    """Raise StoreMismatch when ``$SESSIONMEM_STORE`` (and ``$SESSIONMEM_PROJECT_KEY``,
    when given) names another store than the one the daemon serves. Not told a store:
    any daemon of the project will do (it read the project's sessionmem.toml)."""
    told = environ.get("SESSIONMEM_STORE") or None
    if told is None:
        return
    key = environ.get("SESSIONMEM_PROJECT_KEY") or None
    where = f"sessionmemd (pid {hello.pid}) on {hello.socketPath}"
    if not hello.store:
        raise errors.StoreMismatch(
            f"$SESSIONMEM_STORE names {mask(told)}, and {where} does not say which store it serves "
            f"(an older daemon): run `sessionmem daemon restart`; no call was sent",
            {"expected": mask(told)})
    if identity(told) != identity(hello.store):
        raise errors.StoreMismatch(
            f"$SESSIONMEM_STORE names {mask(told) if told != SQLITE else 'the SQLite file (sqlite)'}, "
            f"but {where} serves {shown(hello)}: refusing to write to another store; stop that daemon "
            f"(`sessionmem daemon stop`) or unset $SESSIONMEM_STORE; no call was sent",
            {"expected": mask(told), "served": hello.store})
    if key is not None and hello.store != SQLITE and key != hello.projectKey:
        raise errors.StoreMismatch(
            f"$SESSIONMEM_PROJECT_KEY is {key!r}, but {where} serves project key {hello.projectKey!r} "
            f"in {hello.store}: refusing to write to another project; no call was sent",
            {"expected": key, "served": hello.projectKey})
