"""Export keys as a regedit ".reg" file ("Windows Registry Editor Version 5.00").

The format, as regedit writes it: UTF-16LE with a byte order mark, CRLF line ends, a header
line, then for each key (the key itself first, then its subkeys, depth first) a ``[full path]``
line, one line per value, and an empty line. Value lines:

    @="default value"                     the default (unnamed) value
    "Name"="text"                         REG_SZ (backslash and quote escaped with a backslash)
    "Name"=dword:0000000a                 REG_DWORD of 4 bytes
    "Name"=hex:01,02                      REG_BINARY
    "Name"=hex(2):25,00,...               REG_EXPAND_SZ, hex(7) REG_MULTI_SZ, hex(b) REG_QWORD,
                                          hex(0) REG_NONE, hex(N) any other type (N in hex)

Long hex data is wrapped as regedit wraps it: lines of at most 80 characters ending in ``,\\``,
continued on the next line after two spaces. Data that regedit's string or dword form cannot carry
exactly (a REG_SZ without its terminating NUL, with a NUL inside or with a line break, a DWORD
that is not 4 bytes) is written in the hex(N) form of its type, so importing gives back the same
bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from offline_fix.hive.reader import Key, Value
from offline_fix.hive.structures import REG_BINARY, REG_DWORD, REG_SZ

HEADER = "Windows Registry Editor Version 5.00"
LINE_WIDTH = 80  # regedit wraps hex data so that no line (with its trailing backslash) is longer
_BOM = "\ufeff"


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def hex_form(type_: int) -> str:
    if type_ == REG_BINARY:
        return "hex"
    return f"hex({type_:x})"


def _wrap_hex(prefix: str, data: bytes) -> list[str]:
    """``prefix`` followed by the data as comma-separated hex pairs, wrapped as regedit does."""
    lines = []
    line = prefix
    last = len(data) - 1
    for i, byte in enumerate(data):
        piece = f"{byte:02x}," if i < last else f"{byte:02x}"
        if len(line) + len(piece) > LINE_WIDTH - 1 and line.strip():  # room for the backslash
            lines.append(line + "\\")
            line = "  "
        line += piece
    lines.append(line)
    return lines


def value_lines(value: Value) -> list[str]:
    """The line(s) regedit writes for one value."""
    name = "@" if value.name == "" else quote(value.name)
    raw = value.raw
    if value.type == REG_SZ and len(raw) % 2 == 0 and raw.endswith(b"\x00\x00"):
        text = raw[:-2].decode("utf-16-le", "surrogatepass")
        if "\x00" not in text and "\r" not in text and "\n" not in text:
            return [f"{name}={quote(text)}"]
    if value.type == REG_DWORD and len(raw) == 4:
        return [f"{name}=dword:{int.from_bytes(raw, 'little'):08x}"]
    return _wrap_hex(f"{name}={hex_form(value.type)}:", raw)


def key_lines(key: Key, full_path: str) -> list[str]:
    return [f"[{full_path}]", *[line for value in key.values() for line in value_lines(value)], ""]


def export_lines(key: Key, root_name: str) -> Iterator[str]:
    """Every line of the .reg text for ``key`` and everything below it. ``root_name`` is what
    stands for the hive's root in the file (``HKEY_LOCAL_MACHINE\\SYSTEM``, say)."""
    yield HEADER
    yield ""
    for sub in key.walk():
        yield from key_lines(sub, "\\".join(part for part in (root_name, sub.path) if part))


def encode(lines: Iterable[str]) -> bytes:
    """The lines as regedit stores them: UTF-16LE with a BOM, CRLF line ends."""
    text = _BOM + "\r\n".join(lines) + "\r\n"
    return text.encode("utf-16-le", "surrogatepass")
