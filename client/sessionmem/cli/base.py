"""What every command module of the CLI shares: the context (options, the session),
output, and how errors become one line and an exit code. Imports no command module."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click
import msgspec

from .. import errors
from ..paths import PathError, resolve
from .argv import hoist, not_utf8
from .report import InputError, report

_json = msgspec.json.Encoder()


class Ctx:
    def __init__(self, project: str | None, socket: str | None, as_json: bool, autostart: bool,
                 session_id: str | None = None) -> None:
        self.project = project
        self.socket = socket
        self.as_json = as_json
        self.autostart = autostart
        self.session_id = session_id
        self._session: Any = None

    def session(self, autostart: bool | None = None, check_version: bool = True) -> Any:
        if self._session is None:
            from ..session import Session

            self._session = Session(self.project, self.socket,
                                    autostart=self.autostart if autostart is None else autostart,
                                    check_version=check_version, session_id=self.session_id)
        return self._session

    def paths(self) -> Any:
        return resolve(self.project, self.socket)

    def out(self, value: Any, human: str | None = None) -> None:
        if self.as_json:
            click.echo(_json.encode(value).decode())
        elif human is not None:
            if human:
                click.echo(human)
        elif value is None:
            pass
        elif isinstance(value, str):
            click.echo(value)
        else:
            click.echo(_json.encode(value).decode())


pass_ctx: Callable[..., Any] = click.make_pass_decorator(Ctx)


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"sessionmem: {message}", err=True)
    sys.exit(code)


class Group(click.Group):
    """Turns sessionmem errors into one readable line and an exit code."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if ctx.parent is None:  # the whole command line (entry.py does the same for its path)
            why = not_utf8(args, dict(os.environ))
            if why is not None:
                fail(why)
            args = hoist(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (errors.SessionmemError, PathError, InputError) as e:
            message, code = report(e) or (str(e), 1)
            fail(message, code)
