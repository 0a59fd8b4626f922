"""``offline-fix hive set|delete`` (offline_fix/cli/hive_edit.py) through offline_fix.cli.main.

What we wrote is read back with hivex (C, Debian), never only with our own reader.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct

import pytest

from offline_fix.cli import main
from offline_fix.hive.baseblock import BaseBlock
from offline_fix.hive.writer import new_hive

hivex = pytest.importorskip("hivex")

TCPIP = r"ControlSet001\Services\Tcpip"


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy(realdata, name, tmp_path):
    dst = tmp_path / name.split("/")[-1].removesuffix(".xz")
    shutil.copyfile(realdata(name), dst)
    dst.chmod(0o644)
    return dst


def hx_value(path, key_path: str, name: str):
    h = hivex.Hivex(str(path))
    node = h.root()
    for part in filter(None, key_path.split("\\")):
        node = h.node_get_child(node, part)
        if node is None:
            return None
    value = h.node_get_value(node, name)
    return h.value_value(value)


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_set_dword_in_place_then_hivex_reads_it(realdata, tmp_path, capsys) -> None:
    hive = copy(realdata, "regipy/SYSTEM.xz", tmp_path)
    original = hive.read_bytes()
    code, out, err = run(capsys, "hive", "set", hive, TCPIP, "/v", "Start", "/t", "REG_DWORD", "/d", "4", "/f")
    assert code == 0, err
    assert "REG_DWORD 0x4" in out and "The operation completed successfully." in out
    assert hx_value(hive, TCPIP, "Start") == (4, struct.pack("<I", 4))
    new = hive.read_bytes()
    assert len(new) == len(original)
    # outside the base block only the 4 data bytes of the vk may differ
    diff = [i for page in range(4096, len(new), 4096) if new[page:page + 4096] != original[page:page + 4096]
            for i in range(page, page + 4096) if new[i] != original[i]]
    assert 1 <= len(diff) <= 4 and diff[-1] - diff[0] < 4, diff
    block = BaseBlock.parse(new)
    assert block.checksum_ok and block.sequence1 == block.sequence2 == BaseBlock.parse(original).sequence1 + 1
    code, out, _ = run(capsys, "hive", "query", hive, TCPIP, "/v", "Start")
    assert code == 0 and "0x4" in out


def test_dry_run_changes_nothing(realdata, tmp_path, capsys) -> None:
    hive = copy(realdata, "yarp/EmptyHive", tmp_path)
    before = sha256(hive)
    code, out, _ = run(capsys, "hive", "set", hive, "New\\Key", "/v", "x", "/t", "REG_SZ", "/d", "hello",
                       "--create", "--dry-run", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["dry_run"] is True and doc["written_to"] is None
    assert doc["sha256_before"] == before and doc["sha256_after"] != before
    assert [c["action"] for c in doc["changes"]] == ["create_key", "set_value"]
    assert doc["changes"][1]["new"] == {"type": "REG_SZ", "data": "hello", "size": 12}
    assert doc["ranges"] and all(r["length"] > 0 for r in doc["ranges"])
    code, out, _ = run(capsys, "hive", "delete", hive, "", "/v", "nothing", "--dry-run")
    assert code == 3
    assert sha256(hive) == before
    system = copy(realdata, "regipy/SYSTEM.xz", tmp_path)
    before = sha256(system)
    code, out, err = run(capsys, "hive", "set", system, TCPIP, "/v", "Start", "/t", "REG_DWORD", "/d", "4",
                         "--dry-run")  # an existing value: shown without /f, not written
    assert code == 0 and "-> REG_DWORD 0x4" in out and "nothing written (dry run)" in out, err
    code, out, err = run(capsys, "hive", "delete", system, "ControlSet001\\Services", "--dry-run", "--json")
    assert code == 0 and json.loads(out)["changes"][0]["subkeys_deleted"] > 400
    assert sha256(system) == before


def test_an_interrupted_write_leaves_a_dirty_hive(realdata, tmp_path, capsys, monkeypatch) -> None:
    """In place, the base block is first marked dirty (sequence numbers differ), then the cells
    are written, then the final base block: stopped after the first step, the hive reads as
    dirty, which Windows and offline-fix both notice, instead of clean and inconsistent."""
    import os

    from offline_fix.cli import hive_edit

    hive = copy(realdata, "yarp/MultiSzHive", tmp_path)
    original = BaseBlock.parse(hive.read_bytes())
    calls = []

    def crash_after_first(fd):
        calls.append(fd)
        if len(calls) > 1:
            raise KeyboardInterrupt
        os.fsync(fd)

    monkeypatch.setattr(hive_edit.os, "fsync", crash_after_first)
    code, _, _ = run(capsys, "hive", "set", hive, "key", "/v", "new", "/t", "REG_DWORD", "/d", "1")
    assert code == 130
    block = BaseBlock.parse(hive.read_bytes())
    assert block.checksum_ok and block.dirty
    assert (block.sequence1, block.sequence2) == (original.sequence1 + 1, original.sequence2)
    monkeypatch.undo()
    code, _, err = run(capsys, "hive", "set", hive, "key", "/v", "new", "/t", "REG_DWORD", "/d", "1")
    assert code == 7 and "dirty" in err


def test_dirty_hive_is_refused_with_one_line(realdata, tmp_path, capsys) -> None:
    hive = copy(realdata, "regipy/SYSTEM_2.xz", tmp_path)
    before = sha256(hive)
    for args in (["set", hive, "Select", "/v", "Current", "/t", "REG_DWORD", "/d", "2", "/f"],
                 ["delete", hive, "Select", "/v", "Current", "/f"]):
        code, out, err = run(capsys, "hive", *args)
        assert code == 7
        assert out == "" and len(err.strip().splitlines()) == 1
        assert "dirty" in err and "recover" in err and "Traceback" not in err
    assert sha256(hive) == before


def test_every_type_from_the_command_line(realdata, tmp_path, capsys) -> None:
    hive = copy(realdata, "yarp/UnicodeHive", tmp_path)
    key = "Типы"
    cases = [
        (["/v", "sz", "/t", "REG_SZ", "/d", "héllo"], (1, "héllo\0".encode("utf-16-le"))),
        (["/v", "exp", "/t", "reg_expand_sz", "/d", "%SystemRoot%\\x"], (2, "%SystemRoot%\\x\0".encode("utf-16-le"))),
        (["/v", "multi", "/t", "REG_MULTI_SZ", "/d", "a\\0b\\0c"], (7, "a\0b\0c\0\0".encode("utf-16-le"))),
        (["/v", "multi2", "/t", "REG_MULTI_SZ", "/d", "a#b", "/se", "#"], (7, "a\0b\0\0".encode("utf-16-le"))),
        (["/v", "bin", "/t", "REG_BINARY", "/d", "00ff10"], (3, b"\x00\xff\x10")),
        (["/v", "dw", "/t", "REG_DWORD", "/d", "0x10"], (4, struct.pack("<I", 16))),
        (["/v", "be", "/t", "REG_DWORD_BIG_ENDIAN", "/d", "16"], (5, struct.pack(">I", 16))),
        (["/v", "qw", "/t", "REG_QWORD", "/d", "0x1122334455667788"], (11, struct.pack("<Q", 0x1122334455667788))),
        (["/v", "none", "/t", "REG_NONE"], (0, b"")),
        (["/ve", "/d", "default"], (1, "default\0".encode("utf-16-le"))),
    ]
    for args, _ in cases:
        code, _out, err = run(capsys, "hive", "set", hive, key, *args, "--create")
        assert code == 0, (args, err)
    for args, want in cases:
        name = "" if args[0] == "/ve" else args[1]
        assert hx_value(hive, key, name) == want, args


def test_output_file_and_growth(tmp_path, capsys) -> None:
    small = tmp_path / "small"
    small.write_bytes(new_hive("ROOT").buf)
    out = tmp_path / "out"
    before = sha256(small)
    big = "ab" * 100_000
    code, text, err = run(capsys, "hive", "set", small, "k", "/v", "blob", "/t", "REG_BINARY", "/d", big,
                          "--create", "-o", out)
    assert code == 0, err
    assert sha256(small) == before
    assert out.stat().st_size > small.stat().st_size and "grows" in text
    assert hx_value(out, "k", "blob") == (3, bytes.fromhex(big))
    code, _, err = run(capsys, "hive", "set", small, "k", "/v", "x", "--create", "-o", out)
    assert code == 7 and "exists" in err
    code, _, err = run(capsys, "hive", "set", small, "k", "/v", "blob", "/t", "REG_BINARY", "/d", big, "--create")
    assert code == 0 and small.stat().st_size == out.stat().st_size
    assert hx_value(small, "k", "blob") == (3, bytes.fromhex(big))  # grown in place


def test_refusals_and_usage_errors(realdata, tmp_path, capsys) -> None:
    hive = copy(realdata, "yarp/MultiSzHive", tmp_path)
    before = sha256(hive)
    for args, code_wanted in (
        (["set", hive, "missing", "/v", "x"], 3),  # no --create: a typo is not a new key
        (["set", hive, "key", "/v", "1", "/t", "REG_MULTI_SZ", "/d", "x"], 7),  # exists, no /f
        (["set", hive, "key", "/v", "x", "/t", "REG_DWORD", "/d", "abc"], 2),
        (["set", hive, "key", "/v", "x", "/t", "REG_DWORD", "/d", "4294967296"], 2),
        (["set", hive, "key", "/v", "x", "/t", "REG_BOGUS"], 2),
        (["set", hive, "key", "/v", "x", "/t", "REG_BINARY", "/d", "xyz"], 2),
        (["set", hive, "key", "/v", "x", "/ve"], 2),
        (["delete", hive, "key"], 7),  # no /f
        (["delete", hive, "key", "/v", "missing", "/f"], 3),
        (["delete", hive, "", "/f"], 7),  # the root
        (["set", tmp_path / "absent", "k"], 3),
    ):
        code, out, err = run(capsys, "hive", *args)
        assert code == code_wanted, (args, err)
        assert "Traceback" not in err
    assert sha256(hive) == before


def test_delete_value_and_key(realdata, tmp_path, capsys) -> None:
    hive = copy(realdata, "yarp/MultiSzHive", tmp_path)
    assert hx_value(hive, "key", "1") is not None
    code, out, err = run(capsys, "hive", "delete", hive, "key", "/v", "1", "/f")
    assert code == 0, err
    h = hivex.Hivex(str(hive))
    node = h.node_get_child(h.root(), "key")
    assert [h.value_key(v) for v in h.node_values(node)] == ["2"]
    code, out, err = run(capsys, "hive", "delete", hive, "HKLM\\MULTISZHIVE\\key", "/f", "--json")
    assert code == 0, err
    assert json.loads(out)["changes"][0]["action"] == "delete_key"
    h = hivex.Hivex(str(hive))
    assert h.node_children(h.root()) == []


def test_corrupt_input_is_one_line(tmp_path, capsys) -> None:
    bad = tmp_path / "garbage"
    bad.write_bytes(b"regf" + bytes(100))
    code, out, err = run(capsys, "hive", "set", bad, "k", "/v", "x", "--create")
    assert code == 5 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
