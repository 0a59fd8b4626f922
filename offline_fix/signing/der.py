"""A small, fast, bounded reader for DER (and BER indefinite lengths) used on hot paths.

asn1crypto parses whole structures into objects, which is the right tool for verification but
costs hundreds of microseconds per catalog. Indexing thousands of catalogs only needs to walk
down to the member list and pick a few fields, so this module reads tag-length-value headers
straight out of a ``bytes`` buffer: every header is checked against the end of its parent
(ITU-T X.690, 8.1: identifier, length and contents octets), lengths above 2**32 are refused,
indefinite lengths (BER, 8.1.3.6) are followed with a depth limit, and nothing is copied.

Every error is raised as the ``exc`` class the caller passes (CatalogError, SignatureError ...),
so a catalog that is garbage reports a catalog error naming the offset and the field.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterator

from offline_fix.errors import CorruptInput

# Universal tags (X.690 / X.680) as the identifier octet of a DER element.
BOOLEAN = 0x01
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
UTF8_STRING = 0x0C
PRINTABLE_STRING = 0x13
IA5_STRING = 0x16
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18
BMP_STRING = 0x1E
SEQUENCE = 0x30
SET = 0x31
CONTEXT_0 = 0xA0  # [0] constructed
CONTEXT_1 = 0xA1  # [1] constructed

MAX_DEPTH = 64  # nesting limit when following indefinite lengths


class DerError(CorruptInput):
    """Broken DER/BER encoding (used when a caller does not name its own error class)."""


def header(buf: bytes, pos: int, end: int, field: str, exc: type[CorruptInput] = DerError,
           _depth: int = 0) -> tuple[int, int, int, int]:
    """Read the element at ``pos`` inside ``buf[:end]``.

    Returns ``(tag, content_start, content_end, next_pos)``; ``next_pos`` differs from
    ``content_end`` only for indefinite lengths (two end-of-contents octets follow).
    Multi-byte (high-number) tags are returned as their first octet; callers only match
    universal and low context tags, so such an element is simply skipped as unknown.
    """
    if pos + 2 > end:
        raise exc("truncated ASN.1 element", offset=pos, field=field, expected="2 header bytes",
                  found=max(0, end - pos))
    tag = buf[pos]
    i = pos + 1
    if tag & 0x1F == 0x1F:  # high tag number form: base-128 continuation octets
        while True:
            if i >= end:
                raise exc("truncated ASN.1 tag", offset=pos, field=field)
            more = buf[i] & 0x80
            i += 1
            if not more:
                break
            if i - pos > 6:
                raise exc("ASN.1 tag number too long", offset=pos, field=field)
        if i >= end:
            raise exc("truncated ASN.1 length", offset=pos, field=field)
    first = buf[i]
    i += 1
    if first < 0x80:
        stop = i + first
    elif first == 0x80:
        if not tag & 0x20:
            raise exc("indefinite length on a primitive element", offset=pos, field=field)
        if _depth >= MAX_DEPTH:
            raise exc("ASN.1 nesting too deep", offset=pos, field=field, expected=f"<= {MAX_DEPTH}")
        cur = i
        while True:  # children until the end-of-contents octets 00 00
            if cur + 2 > end:
                raise exc("unterminated indefinite-length element", offset=pos, field=field)
            if buf[cur] == 0 and buf[cur + 1] == 0:
                return tag, i, cur, cur + 2
            cur = header(buf, cur, end, field, exc, _depth + 1)[3]
    else:
        n = first & 0x7F
        if n > 4:
            raise exc("ASN.1 length too large", offset=pos, field=field, expected="<= 4 length bytes", found=n)
        if i + n > end:
            raise exc("truncated ASN.1 length", offset=pos, field=field)
        length = int.from_bytes(buf[i:i + n], "big")
        i += n
        stop = i + length
    if stop > end:
        raise exc("ASN.1 element runs past its container", offset=pos, field=field,
                  expected=f"end <= {end}", found=stop)
    return tag, i, stop, stop


def expect(buf: bytes, pos: int, end: int, tag: int, field: str,
           exc: type[CorruptInput] = DerError) -> tuple[int, int, int]:
    """Read the element at ``pos`` and require ``tag``. Returns (content_start, content_end, next)."""
    got, start, stop, nxt = header(buf, pos, end, field, exc)
    if got != tag:
        raise exc("unexpected ASN.1 element", offset=pos, field=field, expected=hex(tag), found=hex(got))
    return start, stop, nxt


def children(buf: bytes, start: int, end: int, field: str,
             exc: type[CorruptInput] = DerError) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(tag, content_start, content_end, element_start)`` for each child in [start, end)."""
    pos = start
    while pos < end:
        tag, cstart, cend, nxt = header(buf, pos, end, field, exc)
        yield tag, cstart, cend, pos
        pos = nxt  # header() guarantees nxt > pos


def oid_to_str(raw: bytes) -> str:
    """Dotted form of the contents octets of an OBJECT IDENTIFIER (X.690, 8.19)."""
    if not raw:
        return ""
    parts: list[int] = []
    value = 0
    for byte in raw:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    first = parts[0] if parts else 0
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(p) for p in head + parts[1:])


def oid_bytes(dotted: str) -> bytes:
    """Contents octets of an OBJECT IDENTIFIER, for matching without decoding."""
    nums = [int(x) for x in dotted.split(".")]
    out = bytearray()
    for value in [nums[0] * 40 + nums[1]] + nums[2:]:
        chunk = [value & 0x7F]
        value >>= 7
        while value:
            chunk.append(0x80 | (value & 0x7F))
            value >>= 7
        out.extend(reversed(chunk))
    return bytes(out)


def parse_time(tag: int, raw: bytes, field: str, exc: type[CorruptInput] = DerError,
               offset: int | None = None) -> datetime:
    """UTCTime (RFC 5280 4.1.2.5.1: YY < 50 is 20YY) or GeneralizedTime, as an aware UTC datetime."""
    try:
        text = raw.decode("ascii").rstrip("Z")
        if tag == UTC_TIME:
            if len(text) == 10:  # seconds are optional in BER UTCTime
                text += "00"
            year = int(text[:2])
            text = str(1900 + year if year >= 50 else 2000 + year) + text[2:]
        elif tag != GENERALIZED_TIME:
            raise exc("not a time value", offset=offset, field=field,
                      expected="UTCTime or GeneralizedTime", found=hex(tag))
        whole, _, frac = text.partition(".")
        if len(whole) != 14 or not whole.isdigit() or (frac and not frac.isdigit()):
            raise ValueError(text)
        return datetime(int(whole[0:4]), int(whole[4:6]), int(whole[6:8]), int(whole[8:10]),
                        int(whole[10:12]), int(whole[12:14]), int(frac[:6].ljust(6, "0")) if frac else 0,
                        tzinfo=timezone.utc)
    except (UnicodeDecodeError, ValueError) as e:
        raise exc("bad time value", offset=offset, field=field, found=raw[:24]) from e
