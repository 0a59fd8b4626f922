"""HiveWriter (offline_fix/hive/writer.py, alloc.py) on real hives, checked by other readers.

Oracles: python-registry, hivex (C, Debian) and regipy read what we wrote; a full walk before and
after shows every untouched key and value unchanged; the reported byte ranges turn the original
file into the new one and back. Our own reader is used only as a fourth reader.
"""

from __future__ import annotations

import random
import struct

import pytest

from offline_fix.errors import NotFound, Refused, VerificationFailed
from offline_fix.hive import DirtyHive, Hive, KeyNotFound
from offline_fix.hive.baseblock import BaseBlock
from offline_fix.hive.reader import fold_name
from offline_fix.hive.structures import (
    BIG_DATA_THRESHOLD,
    DATA_INLINE,
    MAX_LEAF_ELEMENTS,
    REG_BINARY,
    REG_DWORD,
    REG_DWORD_BIG_ENDIAN,
    REG_EXPAND_SZ,
    REG_LINK,
    REG_MULTI_SZ,
    REG_NONE,
    REG_QWORD,
    REG_SZ,
)
from offline_fix.hive.writer import (
    BadValueData,
    HiveWriter,
    ValueNotFound,
    WriteRefused,
    encode_data,
    new_hive,
)

hivex = pytest.importorskip("hivex")
Registry = pytest.importorskip("Registry.Registry")

CLOCK = 133_000_000_000_000_000  # a fixed FILETIME (2022-06-18) for every timestamp we write


def clock() -> int:
    return CLOCK


# -- independent readers ---------------------------------------------------------------------------
def walk_pyreg(path) -> dict[str, dict]:
    """python-registry's view: {key path: {"ts", "values": {name: (type, raw)}, "subkeys"}}."""
    reg = Registry.Registry(str(path))
    out = {}
    stack = [(reg.root(), "")]
    while stack:
        key, at = stack.pop()
        subkeys = list(key.subkeys())
        out[at] = {
            "ts": key.timestamp(),
            "values": {_pyreg_name(v): (v.value_type(), v.raw_data()) for v in key.values()},
            "subkeys": [s.name() for s in subkeys],
        }
        stack.extend((s, f"{at}\\{s.name()}" if at else s.name()) for s in subkeys)
    return out


def _pyreg_name(value) -> str:
    """python-registry names the default value "(default)"; the others use ""."""
    return "" if value.name() == "(default)" and value._vkrecord.has_name() is False else value.name()


def walk_hivex(path) -> dict[str, dict]:
    """hivex's view: {key path: {"values": {name: (type, raw)}, "subkeys": [names in order]}}."""
    h = hivex.Hivex(str(path))
    out = {}
    stack = [(h.root(), "")]
    while stack:
        node, at = stack.pop()
        children = h.node_children(node)
        values = {}
        for v in h.node_values(node):
            typ, raw = h.value_value(v)
            values[h.value_key(v)] = (typ, raw)
        names = [h.node_name(c) for c in children]
        out[at] = {"values": values, "subkeys": names}
        stack.extend((c, f"{at}\\{n}" if at else n) for c, n in zip(children, names))
    return out


def walk_ours(data: bytes) -> dict[str, dict]:
    hive = Hive.open(data)
    return {k.path: {"values": {v.name: (v.type, v.raw) for v in k.values()},
                     "subkeys": [s.name for s in k.subkeys()]} for k in hive.root.walk()}


def sort_key(name: str) -> bytes:
    return fold_name(name).encode("utf-16-be", "surrogatepass")


# -- cell accounting: nothing we free is still referenced, nothing we allocate is lost -------------
def referenced_cells(hive: Hive) -> set[int]:
    refs = set()
    for key in hive.root.walk():
        refs.add(key.offset)
        refs.add(key.security_offset)
        if key.subkey_count:
            root = key.subkey_list_offset
            refs.add(root)
            start, _ = hive.cell(root, "list")
            if hive.buf[start:start + 2] == b"ri":
                count = struct.unpack_from("<H", hive.buf, start + 2)[0]
                refs.update(hive.cell_list(root, count, "ri", header=4))
        if key.value_count:
            refs.add(key.value_list_offset)
        if key.class_length:
            refs.add(key.class_offset)
        for value in key.values():
            refs.add(value.offset)
            start, _ = hive.cell(value.offset, "vk")
            length, data = struct.unpack_from("<II", hive.buf, start + 4)
            if length & DATA_INLINE or length == 0:
                continue
            refs.add(data)
            if length > BIG_DATA_THRESHOLD and hive.minor > 3:
                dstart, _ = hive.cell(data, "db")
                count, seg_list = struct.unpack_from("<HI", hive.buf, dstart + 2)
                refs.add(seg_list)
                refs.update(hive.cell_list(seg_list, count, "segments"))
    # every security cell on the list that starts at the root's
    sk = first = hive.root.security_offset
    for _ in range(100000):
        refs.add(sk)
        start, _ = hive.cell(sk, "sk")
        sk = struct.unpack_from("<I", hive.buf, start + 4)[0]
        if sk == first:
            break
    return refs


def leaked_cells(data: bytes) -> set[int]:
    hive = Hive.open(data)
    allocated = {off for off, _size, used in hive.iter_cells() if used}
    refs = referenced_cells(hive)
    assert refs <= allocated, "a referenced cell is free"
    return allocated - refs


# -- what every write test checks ------------------------------------------------------------------
def check_commit(original: bytes, new: bytes, commit) -> None:
    assert commit.apply(original) == new
    assert commit.undo(new) == original
    assert commit.old_size == len(original) and commit.new_size == len(new)
    assert commit.grows == (len(new) > len(original))
    offsets = [r.offset for r in commit.ranges]
    assert offsets == sorted(offsets)
    assert all(a.end <= b.offset for a, b in zip(commit.ranges, commit.ranges[1:]))
    old_block, new_block = BaseBlock.parse(original), BaseBlock.parse(new)
    assert new_block.checksum_ok and new_block.sequences_match
    assert new_block.sequence1 == old_block.sequence1 + 1
    assert new_block.hive_bins_size % 4096 == 0 and 4096 + new_block.hive_bins_size <= len(new)


def test_encode_data_checks_each_type() -> None:
    assert encode_data(REG_DWORD, 4) == b"\x04\x00\x00\x00"
    assert encode_data(REG_DWORD_BIG_ENDIAN, 4) == b"\x00\x00\x00\x04"
    assert encode_data(REG_QWORD, 1 << 40) == struct.pack("<Q", 1 << 40)
    assert encode_data(REG_SZ, "ab") == b"a\x00b\x00\x00\x00"
    assert encode_data(REG_LINK, "ab") == b"a\x00b\x00"
    assert encode_data(REG_MULTI_SZ, ["a", "b"]) == "a\0b\0\0".encode("utf-16-le")
    assert encode_data(REG_MULTI_SZ, []) == b"\x00\x00"
    for type_, data in [(REG_DWORD, b"\x01\x02\x03"), (REG_DWORD, 1 << 32), (REG_DWORD, -1), (REG_QWORD, b"1234"),
                        (REG_SZ, b"a\x00"), (REG_SZ, b"abc"), (REG_SZ, "a\x00b"), (REG_MULTI_SZ, ["a", ""]),
                        (REG_MULTI_SZ, "a\x00\x00\x00".encode()), (REG_BINARY, "text"), (REG_DWORD, "4"),
                        (REG_DWORD, True), (-1, b""), (1 << 32, b"")]:
        with pytest.raises(BadValueData):
            encode_data(type_, data)


def test_dirty_hive_is_refused(realdata) -> None:
    hive = Hive.open(realdata("regipy/SYSTEM_2.xz"), writable=True)
    assert hive.dirty
    with pytest.raises(DirtyHive) as info:
        HiveWriter(hive)
    assert info.value.exit_code == 7 and "recover" in str(info.value)


def test_read_only_or_tolerant_hive_is_refused(realdata) -> None:
    with pytest.raises(WriteRefused):
        HiveWriter(Hive.open(realdata("yarp/EmptyHive")))
    with pytest.raises(WriteRefused):
        HiveWriter(Hive.open(realdata("yarp/EmptyHive"), writable=True, tolerant=True))


def test_dword_in_place_touches_only_its_data_and_the_base_block(realdata, tmp_path) -> None:
    src = realdata("regipy/SYSTEM.xz")
    original = src.read_bytes()
    hive = Hive.open(original, writable=True)
    path = r"ControlSet001\Services\Tcpip"
    vk = hive.key(path).value("Start")
    assert vk.size == 4 and vk.data != 4
    data_at = 4096 + vk.offset + 4 + 8  # file offset of the vk's Data field (inline DWORD)
    w = HiveWriter(hive, clock=clock)
    w.set_value(path, "Start", REG_DWORD, 4)
    commit = w.commit()
    new = bytes(hive.buf)
    check_commit(original, new, commit)
    for r in commit.ranges:
        assert r.end <= 4096 or (data_at <= r.offset and r.end <= data_at + 4), r
    assert any(r.offset >= 4096 for r in commit.ranges)
    out = tmp_path / "SYSTEM"
    out.write_bytes(new)
    h = hivex.Hivex(str(out))
    node = h.root()
    for part in path.split("\\"):
        node = h.node_get_child(node, part)
    assert h.value_dword(h.node_get_value(node, "Start")) == 4
    assert BaseBlock.parse(new).timestamp == CLOCK


HIVES = ["regipy/SYSTEM.xz", "yarp/EmptyHive", "yarp/BigDataHive", "yarp/ManySubkeysHive", "yarp/MultiSzHive",
         "yarp/UnicodeHive"]

NEW_KEY = "offline-fix test\\Ключ ünï"
NEW_VALUES = [
    ("sz", REG_SZ, "text ünïcödé"),
    ("expand", REG_EXPAND_SZ, "%SystemRoot%\\system32\\drivers\\x.sys"),
    ("bin", REG_BINARY, bytes(range(256))),
    ("dword", REG_DWORD, 0xDEADBEEF),
    ("dword_be", REG_DWORD_BIG_ENDIAN, 0x01020304),
    ("qword", REG_QWORD, (1 << 40) + 5),
    ("multi", REG_MULTI_SZ, ["one", "twö", "три"]),
    ("none", REG_NONE, b""),
    ("three", REG_BINARY, b"\x01\x02\x03"),
    ("link", REG_LINK, "\\Registry\\Machine\\System\\ControlSet001"),
    ("big", REG_BINARY, random.Random(1).randbytes(40000)),
    ("segment", REG_BINARY, bytes(BIG_DATA_THRESHOLD)),
    ("unknown type", 0x12345, b"\x01\x02\x03\x04\x05"),
    ("", REG_SZ, "the default value"),
    ("名前", REG_SZ, "a value with a Unicode name"),
]


def _pick(before: dict[str, dict]):
    """An existing key with the most values, a leaf key to delete (not that one), and the key
    with the most subkeys; from hivex's view (exact names, "" for a default value)."""
    paths = sorted(p for p in before if p)
    vkey = max(paths, key=lambda p: (len(before[p]["values"]), p), default=None)
    if vkey is not None and not before[vkey]["values"]:
        vkey = None
    leaves = [p for p in paths if not before[p]["subkeys"] and not (vkey or "").startswith(p)]
    leaf = leaves[len(leaves) // 2] if leaves else None
    many = max(before, key=lambda p: len(before[p]["subkeys"]))
    return vkey, leaf, many


@pytest.mark.parametrize("name", HIVES)
def test_every_kind_of_write_reads_back_in_other_readers(realdata, tmp_path, name) -> None:
    src = realdata(name)
    original = src.read_bytes()
    before = walk_pyreg(src)
    before_hx = walk_hivex(src)
    leaks_before = leaked_cells(original)
    vkey, leaf, many = _pick(before_hx)

    hive = Hive.open(original, writable=True)
    w = HiveWriter(hive, clock=clock)
    expected: dict[tuple[str, str], tuple[int, bytes]] = {}
    gone_values: set[tuple[str, str]] = set()
    touched = {"", "offline-fix test"}
    added_keys = {NEW_KEY: [], "offline-fix test": ["Ключ ünï"], "": ["offline-fix test"]}

    assert w.create_key(NEW_KEY) is True
    assert w.create_key(NEW_KEY.upper()) is False  # names compare case-insensitively
    for vname, type_, data in NEW_VALUES:
        w.set_value(NEW_KEY, vname, type_, data)
        expected[(NEW_KEY, vname)] = (type_, encode_data(type_, data))
    w.set_value(NEW_KEY, "sz", REG_SZ, "replaced, longer than before: " + "x" * 300)
    expected[(NEW_KEY, "sz")] = (REG_SZ, encode_data(REG_SZ, "replaced, longer than before: " + "x" * 300))
    w.set_value(NEW_KEY, "big", REG_BINARY, b"small now")  # big data -> one cell
    expected[(NEW_KEY, "big")] = (REG_BINARY, b"small now")
    w.delete_value(NEW_KEY, "none")
    del expected[(NEW_KEY, "none")]
    w.create_key("offline-fix temp\\a\\b\\c")
    w.set_value("offline-fix temp\\a\\b", "x", REG_BINARY, bytes(50000))
    w.delete_key("offline-fix temp", recursive=True)
    if vkey:  # replace values of an existing key: bigger, smaller, same size; delete one
        values = before_hx[vkey]["values"]
        names = sorted(values, key=lambda n: len(values[n][1]))
        touched.add(vkey)
        biggest = names[-1]
        same = random.Random(3).randbytes(len(values[biggest][1]))
        w.set_value(vkey, biggest, REG_BINARY, same)  # in place (big data: in the same segments)
        expected[(vkey, biggest)] = (REG_BINARY, same)
        if len(names) > 1:
            w.set_value(vkey, names[0], REG_BINARY, b"\xAB" * 5000)
            expected[(vkey, names[0])] = (REG_BINARY, b"\xAB" * 5000)
        if len(names) > 2:
            w.set_value(vkey, names[1], REG_DWORD, 7)
            expected[(vkey, names[1])] = (REG_DWORD, b"\x07\x00\x00\x00")
        if len(names) > 3:
            w.delete_value(vkey, names[2])
            gone_values.add((vkey, names[2]))
    deleted = None
    if leaf:
        w.delete_key(leaf)
        deleted = leaf
        touched.add(leaf.rpartition("\\")[0])
    for sub in ("AAAA offline-fix", "mmmm offline-fix", "zzzz offline-fix"):
        w.create_key(f"{many}\\{sub}" if many else sub)
        added_keys.setdefault(many, []).append(sub)
    touched.add(many)
    commit = w.commit()
    new = bytes(hive.buf)
    check_commit(original, new, commit)
    out = tmp_path / "hive"
    out.write_bytes(new)

    # no cell lost, none freed while still in use
    assert leaked_cells(new) <= leaks_before

    for reader_view, old_view, exact in ((walk_hivex(out), before_hx, True), (walk_pyreg(out), before, False)):
        for path, info in old_view.items():
            if deleted and (path == deleted or path.startswith(deleted + "\\")):
                assert path not in reader_view
                continue
            got = reader_view[path]
            want_subkeys = [s for s in info["subkeys"] if f"{path}\\{s}".lstrip("\\") != deleted]
            want_subkeys += added_keys.get(path, [])
            assert sorted(got["subkeys"], key=sort_key) == sorted(want_subkeys, key=sort_key)
            assert got["subkeys"] == sorted(got["subkeys"], key=sort_key)  # on-disk order is sorted
            for vname, stored in info["values"].items():
                if (path, vname) in gone_values:
                    assert vname not in got["values"]
                elif (path, vname) not in expected:
                    assert got["values"][vname] == stored, (path, vname)
            if not exact and path not in touched:
                assert got["ts"] == info["ts"], path
        new_values = reader_view[NEW_KEY]["values"]
        for (path, vname), (type_, raw) in expected.items():
            got_type, got_raw = reader_view[path]["values"][vname]
            assert got_type == type_ or not exact and type_ > 0xFFF  # python-registry keeps 12 bits
            if exact or len(raw) > 4:  # python-registry pads or mangles data kept in the vk
                assert got_raw == raw, (path, vname)
        assert len(new_values) == len([k for k in expected if k[0] == NEW_KEY])

    ours = walk_ours(new)
    for (path, vname), (type_, raw) in expected.items():
        assert ours[path]["values"][vname] == (type_, raw)

    from regipy.registry import RegistryHive

    reg = RegistryHive(str(out))
    got = {v.name: v.value for v in reg.get_key("\\" + NEW_KEY).iter_values(trim_values=False)}
    assert got["dword"] == 0xDEADBEEF and got["qword"] == (1 << 40) + 5
    assert got["sz"].startswith("replaced") and got["multi"] == ["one", "twö", "три"]
    assert got["名前"] == "a value with a Unicode name"
    for vname in ("segment", "bin", "three"):  # regipy gives binary data as bytes or as hex
        data = got[vname] if isinstance(got[vname], bytes) else bytes.fromhex(got[vname])
        assert data == expected[(NEW_KEY, vname)][1]


def test_free_cells_are_reused_and_coalesced(realdata) -> None:
    hive = Hive.open(realdata("yarp/EmptyHive"), writable=True)
    w = HiveWriter(hive, clock=clock)
    w.create_key("k")
    w.commit()
    free_before = w._alloc.free_cells()
    for i in range(3):
        w.set_value("k", f"v{i}", REG_BINARY, bytes([i]) * 200)
    w.commit()
    assert sum(w._alloc.free_cells().values()) < sum(free_before.values())
    for i in range(3):
        w.delete_value("k", f"v{i}")
    w.commit()
    # three 200-byte data cells, three vk cells and the value list came back as one free run
    assert w._alloc.free_cells() == free_before
    size = len(hive.buf)
    w.set_value("k", "again", REG_BINARY, bytes(600))
    w.commit()
    assert len(hive.buf) == size and hive.base_block.hive_bins_size == 4096


def test_new_bins_are_appended_when_nothing_fits(realdata, tmp_path) -> None:
    original = realdata("yarp/EmptyHive").read_bytes()
    hive = Hive.open(original, writable=True)
    assert hive.base_block.hive_bins_size == 4096 and hive.minor == 3
    w = HiveWriter(hive, clock=clock)
    w.create_key("big")
    payload = random.Random(2).randbytes(300_000)  # minor 3: one cell, no big data record
    w.set_value("big", "blob", REG_BINARY, payload)
    for i in range(1100):  # distinct first 4 characters: the "lf" hints find a name quickly
        w.create_key(f"big\\{i:04d} sub")
    commit = w.commit()
    new = bytes(hive.buf)
    check_commit(original, new, commit)
    assert commit.grows and len(new) > len(original)
    block = BaseBlock.parse(new)
    assert block.hive_bins_size > 300_000 and 4096 + block.hive_bins_size == len(new)
    out = tmp_path / "grown"
    out.write_bytes(new)
    h = hivex.Hivex(str(out))
    node = h.node_get_child(h.root(), "big")
    assert h.value_value(h.node_get_value(node, "blob")) == (REG_BINARY, payload)
    names = [h.node_name(c) for c in h.node_children(node)]
    assert names == [f"{i:04d} sub" for i in range(1100)]
    # more than MAX_LEAF_ELEMENTS subkeys: an index root over leaves, each within the limit
    key = Hive.open(new).key("big")
    start, _ = key.hive.cell(key.subkey_list_offset, "list")
    assert new[start:start + 2] == b"ri"
    count = struct.unpack_from("<H", new, start + 2)[0]
    for leaf in key.hive.cell_list(key.subkey_list_offset, count, "ri", header=4):
        lstart, _ = key.hive.cell(leaf, "leaf")
        assert new[lstart:lstart + 2] == b"lf"  # minor 3: fast leaves
        assert struct.unpack_from("<H", new, lstart + 2)[0] <= MAX_LEAF_ELEMENTS


def test_lh_leaves_carry_windows_hashes(tmp_path) -> None:
    hive = new_hive("ROOT", clock=clock)
    w = HiveWriter(hive, clock=clock)
    for name in ("Services", "straße", "Ключ", "a"):
        w.create_key(name)
    w.commit()
    root = hive.root
    start, _ = hive.cell(root.subkey_list_offset, "lh")
    assert hive.buf[start:start + 2] == b"lh"
    count = struct.unpack_from("<H", hive.buf, start + 2)[0]
    pairs = struct.unpack_from(f"<{2 * count}I", hive.buf, start + 4)
    for off, stored in zip(pairs[::2], pairs[1::2]):
        h = 0
        for unit in struct.unpack("<" + "H" * len(fold_name(hive_name := _name(hive, off))),
                                  fold_name(hive_name).encode("utf-16-le")):
            h = (37 * h + unit) & 0xFFFFFFFF
        assert stored == h
    assert [_name(hive, off) for off in pairs[::2]] == ["a", "Services", "straße", "Ключ"]


def _name(hive, off):
    from offline_fix.hive import Key

    return Key(hive, off, None).name


def test_security_reference_counts_follow_keys(realdata) -> None:
    hive = Hive.open(realdata("yarp/UnicodeHive"), writable=True)
    sk = hive.root.security_offset
    start, _ = hive.cell(sk, "sk")

    def refs() -> int:
        return struct.unpack_from("<I", hive.buf, start + 12)[0]

    count = refs()
    w = HiveWriter(hive, clock=clock)
    w.create_key("a\\b\\c")
    assert refs() == count + 3
    assert hive.key("a\\b\\c").security_offset == sk
    w.delete_key("a", recursive=True)
    assert refs() == count


def test_key_node_fields_are_maintained(realdata) -> None:
    hive = Hive.open(realdata("yarp/EmptyHive"), writable=True)
    w = HiveWriter(hive, clock=clock)
    w.create_key("parent\\a rather long subkey name")
    w.set_value("parent", "a value name", REG_BINARY, bytes(1234))
    w.commit()
    key = hive.key("parent")
    start, _ = hive.cell(key.offset, "nk")
    max_name, _max_class, max_vname, max_vdata = struct.unpack_from("<IIII", hive.buf, start + 52)
    assert max_name & 0xFFFF == 2 * len("a rather long subkey name")
    assert max_vname == 2 * len("a value name") and max_vdata == 1234
    assert key.subkey_count == 1 and key.value_count == 1 and key.timestamp == CLOCK
    assert hive.key("parent\\a rather long subkey name").timestamp == CLOCK


def test_refusals_and_missing_things(realdata) -> None:
    hive = Hive.open(realdata("yarp/EmptyHive"), writable=True)
    w = HiveWriter(hive, clock=clock, max_data_size=1000)
    w.create_key("a\\b")
    with pytest.raises(WriteRefused):
        w.delete_key("a")  # has a subkey
    with pytest.raises(WriteRefused):
        w.delete_key("")  # the root
    with pytest.raises(KeyNotFound):
        w.set_value("nope", "v", REG_DWORD, 1)
    with pytest.raises(ValueNotFound):
        w.delete_value("a", "nope")
    with pytest.raises(WriteRefused):
        w.set_value("a", "v", REG_BINARY, bytes(1001))
    with pytest.raises(WriteRefused):
        w.create_key("x" * 256)
    with pytest.raises(WriteRefused):
        w.set_value("a", "n" * 16384, REG_DWORD, 1)
    with pytest.raises(WriteRefused):
        w.create_key("\\".join(["d"] * 513))
    assert isinstance(ValueNotFound("x"), NotFound) and isinstance(WriteRefused("x"), Refused)


def test_a_failed_change_puts_every_byte_back(realdata) -> None:
    original = realdata("yarp/EmptyHive").read_bytes()
    hive = Hive.open(original, writable=True)
    w = HiveWriter(hive, clock=clock)
    w.create_key("k")
    w.commit()
    state = bytes(hive.buf)
    w._alloc.max_bins_size = hive.base_block.hive_bins_size  # no room to grow
    with pytest.raises(Exception) as info:
        w.set_value("k", "v", REG_BINARY, bytes(100_000))
    assert "outgrow" in str(info.value)
    assert bytes(hive.buf) == state and not w.pending
    w._alloc.max_bins_size = 1 << 31
    w.set_value("k", "v", REG_BINARY, bytes(100))  # the writer still works afterwards
    w.discard()
    assert bytes(hive.buf) == state


def test_commit_without_changes_and_twice(realdata) -> None:
    original = realdata("yarp/MultiSzHive").read_bytes()
    hive = Hive.open(original, writable=True)
    w = HiveWriter(hive, clock=clock)
    empty = w.commit()
    assert empty.ranges == () and bytes(hive.buf) == original
    w.create_key("one")
    first = w.commit()
    mid = bytes(hive.buf)
    w.create_key("two")
    second = w.commit()
    assert BaseBlock.parse(hive.buf).sequence1 == BaseBlock.parse(original).sequence1 + 2
    assert first.undo(second.undo(bytes(hive.buf))) == original
    with pytest.raises(VerificationFailed):
        first.undo(bytes(hive.buf))  # the second commit must be undone first
    assert first.apply(original) == mid
    with pytest.raises(VerificationFailed):
        second.apply(original)  # not the file it was made from


@pytest.mark.parametrize("minor", [3, 5])
def test_new_hive_opens_in_every_reader(tmp_path, minor) -> None:
    hive = HiveWriter.new_hive("ROOT", minor=minor, clock=clock)
    out = tmp_path / "new"
    out.write_bytes(hive.buf)
    assert len(hive.buf) == 8192 and not hive.dirty and hive.minor == minor
    h = hivex.Hivex(str(out))
    assert h.node_name(h.root()) == "ROOT" and h.node_children(h.root()) == []
    assert Registry.Registry(str(out)).root().name() == "ROOT"
    from regipy.registry import RegistryHive

    assert [k.subkey_name for k in RegistryHive(str(out)).recurse_subkeys()] == ["ROOT"]
    # and one built up from it (what the image builders do)
    w = HiveWriter(hive, clock=clock)
    w.create_key(r"ControlSet001\Services\disk")
    w.set_value(r"ControlSet001\Services\disk", "Start", REG_DWORD, 0)
    w.set_value(r"ControlSet001\Services\disk", "ImagePath", REG_EXPAND_SZ, r"System32\drivers\disk.sys")
    w.commit()
    out.write_bytes(hive.buf)
    key = Registry.Registry(str(out)).open(r"ControlSet001\Services\disk")
    assert key.value("Start").value() == 0
    assert key.value("ImagePath").value() == r"System32\drivers\disk.sys"
    assert leaked_cells(bytes(hive.buf)) == set()


def test_two_subkeys_with_one_name_are_not_guessed_between(realdata) -> None:
    from offline_fix.hive import CellError

    hive = Hive.open(realdata("yarp/DuplicateSubkeysHive"), writable=True)
    state = bytes(hive.buf)
    w = HiveWriter(hive, clock=clock)
    for change in (lambda: w.delete_key("key_with_many_subkeys\\4500"),
                   lambda: w.set_value("key_with_many_subkeys\\4500", "v", REG_DWORD, 1),
                   lambda: w.create_key("key_with_many_subkeys\\4500\\sub")):
        with pytest.raises(CellError, match="2 subkeys named"):
            change()
        assert bytes(hive.buf) == state
    w.delete_key("key_with_many_subkeys\\4499")  # the rest of the list is fine
    assert hive.find_key("key_with_many_subkeys\\4499") is None


@pytest.mark.parametrize("name", ["yarp/BadListHive", "yarp/BadSubkeyHive", "yarp/GarbageHive",
                                  "regipy/corrupted_system_hive.xz"])
def test_damaged_hives_give_typed_errors_and_stay_unchanged(realdata, name) -> None:
    from offline_fix.errors import OfflineFixError

    data = realdata(name).read_bytes()
    try:
        hive = Hive.open(data, writable=True)
        w = HiveWriter(hive, clock=clock)
    except OfflineFixError:
        return  # refused whole: corrupt, or dirty (GarbageHive's checksum is wrong)
    names = [k.name for k in Hive.open(data, tolerant=True).root.subkeys()]
    changes = [lambda: w.create_key("new"), lambda: w.set_value("", "v", REG_DWORD, 1)]
    changes += [lambda n=n: w.delete_key(n, recursive=True) for n in names]
    changes += [lambda n=n: w.create_key(n + "\\new") for n in names]

    for change in changes:
        state = bytes(hive.buf)
        try:
            change()
        except OfflineFixError:
            assert bytes(hive.buf) == state
    w.commit()
    # no new damage: a tolerant walk finds no more problems than in the original
    assert len(_tolerant_problems(bytes(hive.buf))) <= len(_tolerant_problems(data))


def _tolerant_problems(data: bytes) -> list[str]:
    hive = Hive.open(data, tolerant=True)
    for key in hive.root.walk():
        list(key.values())
    return hive.warnings
