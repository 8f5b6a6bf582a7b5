"""`sessionmem ui`: the live web view. Starlette and uvicorn are imported only when it runs."""

from __future__ import annotations

import sys

import click

from .base import Ctx, fail, pass_ctx


@click.command()
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0: a free one).")
@pass_ctx
def ui(c: Ctx, port: int) -> None:
    """Serve a live view of this project's sessions on 127.0.0.1 (until Ctrl-C) and print
    its URL, with the token it needs. Needs the extra: pip install 'sessionmem[ui]'."""
    try:
        from ..ui import serve
    except ImportError as e:
        fail(f"{e}: sessionmem ui needs the extra: pip install 'sessionmem[ui]'", 1)

    def announce(url: str) -> None:
        click.echo(url)
        sys.stdout.flush()

    try:
        serve.run(c.project, c.socket, c.autostart, c.session_id, port, announce)
    except OSError as e:
        fail(f"cannot serve on 127.0.0.1:{port}: {e.strerror or e}", 1)
    except KeyboardInterrupt:
        return


COMMANDS: list[click.Command] = [ui]
