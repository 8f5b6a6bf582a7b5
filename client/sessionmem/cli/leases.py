"""`sessionmem lease acquire|renew|release|list`: leases from the shell (design §13).

A one-shot CLI process ends right after its call, and an ephemeral lease (no ttl) ends
with its connection: so `lease acquire` needs `--ttl`, and the holder renews it with
`lease renew NAME --token T` before the ttl passes."""

from __future__ import annotations

import re
import sys
import time
from typing import Any

import click
import msgspec

from .. import errors
from .. import protocol as p
from ..calls import default_owner
from .base import Ctx, fail, pass_ctx

COMMANDS: list[click.Command] = []
_json = msgspec.json.Encoder()
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def duration(text: str) -> float:
    """``30s``, ``5m``, ``1.5h``, ``250ms``, ``2d``, or plain seconds: seconds."""
    m = _DURATION.match(text)
    if m is None or float(m.group(1)) <= 0:
        raise click.BadParameter(f"{text!r} is not a duration: give a positive number with a unit, "
                                 f"like 30s, 5m, 2h, 250ms (plain numbers are seconds)")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def _when(ms: int | None) -> str:
    if ms is None:
        return "until its holder's connection closes"
    left = (ms - time.time() * 1000) / 1000
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))
    return f"until {stamp} (in {max(left, 0):.0f}s)"


def _line(lease: p.Lease) -> str:
    return f"{lease.name}\towner {lease.owner}\ttoken {lease.token}\t{_when(lease.expiresAt)}"


def _out(c: Ctx, lease: p.Lease, human: str) -> None:
    c.out(msgspec.to_builtins(lease), human)


def _held(c: Ctx, name: str, e: errors.LeaseHeld) -> None:
    """Exit 1 naming the holder and when its lease expires."""
    data: dict[str, Any] = e.data if isinstance(e.data, dict) else {}
    if c.as_json:
        click.echo(_json.encode({"error": "leaseHeld", "name": name, **data}).decode())
    elif data.get("owner") is not None:
        click.echo(f"sessionmem: lease {name!r} is held by {data['owner']} (token {data['token']}) "
                   f"{_when(data.get('expiresAt'))}", err=True)
    else:
        click.echo(f"sessionmem: lease {name!r} is not held with that token (it expired or was released)",
                   err=True)
    sys.exit(1)


@click.group()
def lease() -> None:
    """Leases: named claims with an owner, an expiry and a fencing token."""


COMMANDS.append(lease)


@lease.command("acquire")
@click.argument("name")
@click.option("--ttl", metavar="DURATION", help="Ends unless renewed within this time (30s, 5m, 2h). Required here.")
@click.option("--owner", metavar="OWNER", help="Default: $SESSIONMEM_AGENT, else <hostname>:<pid>.")
@pass_ctx
def lease_acquire(c: Ctx, name: str, ttl: str | None, owner: str | None) -> None:
    """Take the lease NAME; print its token. Exit 1 naming the holder when it is held."""
    if ttl is None:
        fail("lease acquire needs --ttl (like --ttl 5m): a lease without a ttl ends when its connection "
             "closes, and this command's connection closes as soon as it returns; renew it with "
             "`sessionmem lease renew NAME --token T` before the ttl passes", 2)
    seconds = duration(ttl)
    try:
        got = c.session().acquire_lease(name, seconds, owner or default_owner())
    except errors.LeaseHeld as e:
        _held(c, name, e)
    info = p.Lease(name=got.name, owner=got.owner, token=got.token, expiresAt=got.expires_at,
                   sessionId=got.session_id, ttlMs=None if got.ttl is None else round(got.ttl * 1000))
    _out(c, info, f"acquired {name} as {got.owner}: token {got.token}, {_when(got.expires_at)}")


@lease.command("renew")
@click.argument("name")
@click.option("--token", type=int, required=True, help="The token acquire printed.")
@click.option("--ttl", metavar="DURATION", help="A new ttl (default: the one it was acquired with).")
@pass_ctx
def lease_renew(c: Ctx, name: str, token: int, ttl: str | None) -> None:
    """Push the expiry of the lease NAME (held with TOKEN) out by its ttl."""
    try:
        got = c.session().renew_lease(name, token, None if ttl is None else duration(ttl))
    except errors.LeaseHeld as e:
        _held(c, name, e)
    _out(c, got, f"renewed {name}: {_when(got.expiresAt)}")


@lease.command("release")
@click.argument("name")
@click.option("--token", type=int, required=True, help="The token acquire printed.")
@pass_ctx
def lease_release(c: Ctx, name: str, token: int) -> None:
    """Give the lease NAME back."""
    try:
        c.session().release_lease(name, token)
    except errors.LeaseHeld as e:
        _held(c, name, e)
    c.out(None, f"released {name}")


@lease.command("list")
@pass_ctx
def lease_list(c: Ctx) -> None:
    """The live leases of the project (with --session: those concerning that session)."""
    got = c.session().list_leases(c.session_id)
    c.out(msgspec.to_builtins(got), "\n".join(_line(x) for x in got))
