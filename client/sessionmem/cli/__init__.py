"""The `sessionmem` command. entry.py is the console script (a fast path for `call`,
oneshot.py; the rest in click: app.py with base.py, commands.py, admin.py, sessions.py).
Kept empty of imports: the fast path must not pay for click."""
