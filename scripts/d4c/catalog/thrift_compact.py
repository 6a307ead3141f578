"""Thrift's compact protocol, schema-free: enough to edit a Parquet footer.

A struct decodes to its fields in order, `[field id, type, value]` (a bool's value is in its
type); lists to `(element type, values)`. Encoding writes what it decoded the way Apache
Thrift's own compact writer does (short field headers for deltas 1-15, short list headers
under 15 elements), so decode -> encode gives the same bytes (tested on pyarrow's footers),
and a footer edited here is the footer pyarrow would have written with those values.
No library in the locks reads or writes Parquet's thrift (pyarrow keeps it inside C++).
"""
from __future__ import annotations

from typing import Any

STOP, TRUE, FALSE, BYTE, I16, I32, I64, DOUBLE, BINARY, LIST, SET, MAP, STRUCT = range(13)


class Reader:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def varint(self) -> int:
        shift = result = 0
        data = self.data
        while True:
            b = data[self.pos]
            self.pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def value(self, t: int) -> Any:
        if t in (I16, I32, I64):
            return self.zigzag()
        if t == BINARY:
            n = self.varint()
            v = self.data[self.pos:self.pos + n]
            self.pos += n
            return v
        if t == STRUCT:
            return self.struct()
        if t in (LIST, SET):
            h = self.data[self.pos]
            self.pos += 1
            size, et = h >> 4, h & 0x0F
            if size == 15:
                size = self.varint()
            if et in (TRUE, FALSE):
                vals = [self.data[self.pos + i] for i in range(size)]
                self.pos += size
                return (et, vals)
            return (et, [self.value(et) for _ in range(size)])
        if t == BYTE:
            self.pos += 1
            return self.data[self.pos - 1]
        if t == DOUBLE:
            self.pos += 8
            return self.data[self.pos - 8:self.pos]
        raise ValueError(f"thrift type {t} not supported")

    def struct(self) -> list[list[Any]]:
        fields: list[list[Any]] = []
        last = 0
        while True:
            h = self.data[self.pos]
            self.pos += 1
            if h == STOP:
                return fields
            t, delta = h & 0x0F, h >> 4
            fid = last + delta if delta else self.zigzag()
            last = fid
            fields.append([fid, t, None if t in (TRUE, FALSE) else self.value(t)])


def _varint(n: int, out: bytearray) -> None:
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _zigzag(n: int, out: bytearray) -> None:
    _varint((n << 1) ^ (n >> 63), out)


def encode_value(t: int, v: Any, out: bytearray) -> None:
    if t in (I16, I32, I64):
        _zigzag(v, out)
    elif t == BINARY:
        _varint(len(v), out)
        out += v
    elif t == STRUCT:
        encode_struct(v, out)
    elif t in (LIST, SET):
        et, vals = v
        if len(vals) < 15:
            out.append(len(vals) << 4 | et)
        else:
            out.append(0xF0 | et)
            _varint(len(vals), out)
        if et in (TRUE, FALSE):
            out += bytes(vals)
        else:
            for x in vals:
                encode_value(et, x, out)
    elif t == BYTE:
        out.append(v)
    elif t == DOUBLE:
        out += v
    else:
        raise ValueError(t)


def encode_struct(fields: list[list[Any]], out: bytearray) -> None:
    last = 0
    for fid, t, v in fields:
        if 0 < fid - last <= 15:
            out.append((fid - last) << 4 | t)
        else:
            out.append(t)
            _zigzag(fid, out)
        last = fid
        if t not in (TRUE, FALSE):
            encode_value(t, v, out)
    out.append(STOP)
