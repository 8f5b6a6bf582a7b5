"""sessionmemd: the per-project daemon that owns the session and its SQLite file."""

from sessionmem import __version__

__all__ = ["__version__"]
