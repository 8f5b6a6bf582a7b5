"""The wire, without sockets: framing and the message shapes."""

from __future__ import annotations

import msgspec
import pytest

from sessionmem import protocol as p
from sessionmem.framing import FrameTooLarge, LineFramer, encode_frame
from sessionmem.api import decode_reply, encode_call, result_of
from sessionmem import errors


def test_framer_splits_lines_and_keeps_the_remainder() -> None:
    f = LineFramer(100)
    assert f.feed(b'{"a":1}\n{"b"') == [b'{"a":1}']
    assert f.pending == 4
    assert f.feed(b":2}\n\n") == [b'{"b":2}', b""]
    assert f.pending == 0


def test_framer_joins_a_frame_split_over_many_reads() -> None:
    f = LineFramer(10_000)
    frame = b"x" * 5000
    out = []
    for i in range(0, len(frame), 7):
        out += f.feed(frame[i : i + 7])
    assert out == []
    assert f.feed(b"\n") == [frame]


def test_framer_rejects_an_endless_line_before_it_ends() -> None:
    f = LineFramer(1000)
    f.feed(b"x" * 600)
    with pytest.raises(FrameTooLarge):
        f.feed(b"x" * 600)  # no newline yet: refused without waiting for one


def test_framer_rejects_an_oversized_complete_line() -> None:
    f = LineFramer(10)
    with pytest.raises(FrameTooLarge):
        f.feed(b"x" * 11 + b"\nok\n")
    assert LineFramer(10).feed(b"x" * 10 + b"\n") == [b"x" * 10]


def test_frames_never_contain_a_raw_newline() -> None:
    frame = encode_frame({"content": "line1\nline2"})
    assert frame.count(b"\n") == 1 and frame.endswith(b"\n")


def test_request_distinguishes_notification_from_null_id() -> None:
    dec = msgspec.json.Decoder(p.Request)
    assert dec.decode(b'{"jsonrpc":"2.0","method":"m"}').id is msgspec.UNSET
    assert dec.decode(b'{"jsonrpc":"2.0","method":"m","id":null}').id is None
    assert dec.decode(b'{"jsonrpc":"2.0","method":"m","id":"a"}').id == "a"
    with pytest.raises(msgspec.ValidationError, match="jsonrpc"):
        dec.decode(b'{"jsonrpc":"1.0","method":"m","id":1}')
    with pytest.raises(msgspec.ValidationError):
        dec.decode(b'{"jsonrpc":"2.0","method":"m","id":[1]}')


def test_params_errors_name_the_field() -> None:
    dec = msgspec.json.Decoder(p.AddMessageParams)
    with pytest.raises(msgspec.ValidationError, match=r"\$\.role"):
        dec.decode(b'{"role":"robot","content":"x"}')
    with pytest.raises(msgspec.ValidationError, match="unknown field `contnet`"):
        dec.decode(b'{"role":"user","contnet":"x"}')
    with pytest.raises(msgspec.ValidationError, match=r"\$\.timestamp"):
        dec.decode(b'{"role":"user","content":"x","timestamp":1.5}')


def test_every_method_has_params_and_result_types() -> None:
    for name, spec in p.METHODS.items():
        assert issubclass(spec.params, msgspec.Struct), name
        msgspec.json.Decoder(spec.result)  # a usable result type


def test_client_encodes_and_decodes_a_round_trip() -> None:
    frame = encode_call("getRecentMessages", {"count": 2}, 7)
    assert msgspec.json.decode(frame) == {"jsonrpc": "2.0", "method": "getRecentMessages", "id": 7, "params": {"count": 2}}
    reply = decode_reply(b'{"jsonrpc":"2.0","id":7,"result":[{"role":"user","content":"c","timestamp":5}]}')
    assert result_of("getRecentMessages", reply) == [p.Message("user", "c", 5)]


def test_client_raises_typed_errors() -> None:
    reply = decode_reply(b'{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"bad","data":{"x":1}}}')
    with pytest.raises(errors.InvalidParams) as ei:
        result_of("getRecentMessages", reply)
    assert ei.value.code == -32602 and ei.value.data == {"x": 1}
    assert isinstance(ei.value, errors.SessionmemError)
    unknown = decode_reply(b'{"jsonrpc":"2.0","id":1,"error":{"code":-32099,"message":"new"}}')
    with pytest.raises(errors.SessionmemError) as ei2:
        result_of("getSessionId", unknown)
    assert ei2.value.code == -32099


def test_every_public_name_resolves_lazily() -> None:
    import sessionmem

    assert set(sessionmem.__all__) == {"__version__", *sessionmem._LAZY}
    for name in sessionmem.__all__:
        assert getattr(sessionmem, name) is not None
    assert issubclass(sessionmem.PersistFailed, sessionmem.SessionmemError)


def test_protocol_re_exports_every_part_of_the_wire() -> None:
    # protocol.py is the one namespace clients read (p.X); the Structs live in its parts
    # (wire*.py). A name added to a part but not re-exported would be missing from p.
    import importlib
    import inspect

    parts = ["wirebase", "wirecore", "wiresessions", "wirecoord", "wiresearch", "wirehello"]
    missing = []
    for name in parts:
        mod = importlib.import_module(f"sessionmem.{name}")
        for attr, value in vars(mod).items():
            own = getattr(value, "__module__", None) == mod.__name__ or (
                attr.isupper() and not inspect.ismodule(value))  # constants (codes, limits)
            if attr.startswith("_") or not own:
                continue
            if getattr(p, attr, None) is not value:
                missing.append(f"{name}.{attr}")
    assert missing == []
    # Every method's params and result are reachable through p as well.
    for spec in p.METHODS.values():
        assert getattr(p, spec.params.__name__) is spec.params
