"""d4c.model.parse_json reads with orjson but must give json's values and error lines:
records hold integers past 64 bits, NaN and other inputs orjson reads differently."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from d4c.errors import D4CError
from d4c.model import parse_json

SAME = [
    b'{"size": 18446744073709551616}',  # past u64: orjson gives a float
    b'{"size": -9223372036854775809}',  # past i64, 19 digits
    b'[99999999999999999999, 1234567890123456789]',
    b'{"size": 18446744073709551615, "n": -9223372036854775808}',
    b'{"x": NaN, "y": Infinity, "z": 1e400}',
    b'"\\ud800"',
    b"\xef\xbb\xbf{}",
    '{"t": "\u00e9"}'.encode("utf-16"),
    b'{"a": 1, "a": 2, "f": [-0.0, 1.0000000000000002, 5e-324]}',
]


@pytest.mark.parametrize("raw", SAME)
def test_values_are_json_s(raw: bytes) -> None:
    got = parse_json(raw, Path("r.json"), "release record")
    assert repr(got) == repr(json.loads(raw))


@pytest.mark.parametrize("raw", [b"{", b'{"a": 1,}', b'{"a": "\x00"}', b"[1] x", b""])
def test_error_line_is_json_s(raw: bytes) -> None:
    with pytest.raises(ValueError) as want:
        json.loads(raw)
    with pytest.raises(D4CError) as got:
        parse_json(raw, Path("r.json"), "release record")
    assert str(want.value) in str(got.value)
    assert "r.json is not JSON" in str(got.value)
