"""Transaction-log replay (offline_fix/hive/log.py).

Oracles (MANIFEST.md section 1): hives Windows itself recovered (yarp's RecoveredHive_Windows10
and RecoveredHive_Windows7), the sequence numbers Windows wrote into regipy's NTUSER logs, and
independent readers (hivex, python-registry) walking what we produce.
"""

from __future__ import annotations

import json
import random
import struct

import pytest

from offline_fix.errors import NotFound, OfflineFixError
from offline_fix.hive.baseblock import BaseBlock
from offline_fix.hive.errors import BaseBlockError, HiveError, LogError
from offline_fix.hive.log import find_logs, recover, recover_files
from offline_fix.hive.marvin import marvin32_bytes

NEW = "yarp/NewDirtyHive1/"
OLD = "yarp/OldDirtyHive/"


@pytest.fixture(scope="module")
def new_hive(realdata):
    """yarp's NewDirtyHive1: primary (seq 3/2), LOG1 (entry 2), LOG2 (entries 3, 4, 5), oracle."""
    def read(name):
        return realdata(NEW + name).read_bytes()
    return {"primary": read("NewDirtyHive"), "LOG1": read("NewDirtyHive.LOG1"),
            "LOG2": read("NewDirtyHive.LOG2"), "oracle": read("RecoveredHive_Windows10")}


@pytest.fixture(scope="module")
def old_hive(realdata):
    def read(name):
        return realdata(OLD + name).read_bytes()
    return {"primary": read("OldDirtyHive"), "LOG1": read("OldDirtyHive.LOG1"),
            "oracle": read("RecoveredHive_Windows7")}


@pytest.fixture(scope="module")
def ntuser(realdata):
    return {"primary": realdata("regipy/transactions_NTUSER.DAT.xz").read_bytes(),
            "log1": realdata("regipy/transactions_ntuser.dat.log1.xz").read_bytes(),
            "log2": realdata("regipy/transactions_ntuser.dat.log2.xz").read_bytes()}


def _new_logs(h, log1=None, log2=None):
    return [("NewDirtyHive.LOG1", h["LOG1"] if log1 is None else bytes(log1)),
            ("NewDirtyHive.LOG2", h["LOG2"] if log2 is None else bytes(log2))]


def _entry_offsets(log: bytes) -> dict[int, int]:
    """sequence number -> file offset of each consecutive HvLE entry."""
    found, off = {}, 512
    while log[off:off + 4] == b"HvLE":
        size, _flags, seq = struct.unpack_from("<III", log, off + 4)
        found[seq] = off
        off += size
    return found


def _rehash(log: bytearray, off: int) -> None:
    """Recompute an entry's Hash-1 and Hash-2 after a test changed it (forging a sound entry)."""
    (size,) = struct.unpack_from("<I", log, off + 4)
    log[off + 24:off + 32] = marvin32_bytes(bytes(log[off + 40:off + size]))
    log[off + 32:off + 40] = marvin32_bytes(bytes(log[off:off + 32]))


def _walk_hivex(path):
    import hivex

    h = hivex.Hivex(str(path))
    keys = values = 0
    stack = [h.root()]
    while stack:
        node = stack.pop()
        keys += 1
        for v in h.node_values(node):
            h.value_value(v)
            values += 1
        stack.extend(h.node_children(node))
    return keys, values


def _walk_python_registry(path):
    from Registry import Registry

    keys = values = 0
    stack = [Registry.Registry(str(path)).root()]
    while stack:
        key = stack.pop()
        keys += 1
        for v in key.values():
            v.value()
            values += 1
        stack.extend(key.subkeys())
    return keys, values


# -- finding logs ---------------------------------------------------------------------------------

def test_find_logs_any_case_in_replay_order(tmp_path):
    for name in ("SYSTEM", "system.log", "System.LOG2", "SYSTEM.log1", "SYSTEM.LOG3", "SOFTWARE.LOG1"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "SYSTEM.LOG2.d").mkdir()
    assert [p.name for p in find_logs(tmp_path / "SYSTEM")] == ["SYSTEM.log1", "System.LOG2", "system.log"]
    assert find_logs(tmp_path / "missing" / "SYSTEM") == []


# -- new format -----------------------------------------------------------------------------------

def test_new_format_matches_windows10_recovery(new_hive):
    r = recover(new_hive["primary"], _new_logs(new_hive))
    assert r.data[4096:] == new_hive["oracle"][4096:]
    assert r.applied_entries == [2, 3, 4, 5]
    assert r.logs_used == ["NewDirtyHive.LOG1", "NewDirtyHive.LOG2"]
    assert r.last_sequence == 5 and r.format == "new" and r.was_dirty
    # The base block too: Windows wrote 6/6 (last applied + 1), everything else as in the primary.
    assert r.data[:4096] == new_hive["oracle"][:4096]
    block = BaseBlock.parse(r.data)
    assert block.checksum_ok and block.sequences_match and block.sequence1 == 6
    d = r.to_dict()
    json.dumps(d)
    assert d["applied_entries"] == [2, 3, 4, 5] and d["last_sequence"] == 5 and d["sequence"] == [6, 6]


def test_new_format_either_log_may_hold_the_earlier_entries(new_hive):
    swapped = [("a.LOG1", new_hive["LOG2"]), ("a.LOG2", new_hive["LOG1"])]
    r = recover(new_hive["primary"], swapped)
    assert r.applied_entries == [2, 3, 4, 5]
    assert r.logs_used == ["a.LOG2", "a.LOG1"]
    assert r.data == new_hive["oracle"]


def test_ntuser_applies_566_to_588_and_opens_in_hivex_and_python_registry(ntuser, tmp_path):
    logs = [("transactions_ntuser.dat.log1", ntuser["log1"]), ("transactions_ntuser.dat.log2", ntuser["log2"])]
    r = recover(ntuser["primary"], logs)
    assert r.applied_entries == list(range(566, 589))
    assert r.logs_used == ["transactions_ntuser.dat.log1"]  # log2 holds 562: older, ignored
    assert r.last_sequence == 588
    block = BaseBlock.parse(r.data)
    assert block.checksum_ok and block.sequences_match and not block.dirty
    assert (block.sequence1, block.hive_bins_size) == (589, 925696)  # grown from 778240 [9]
    out = tmp_path / "NTUSER.DAT"
    out.write_bytes(r.data)
    keys, values = _walk_hivex(out)
    assert (keys, values) == _walk_python_registry(out)
    before = tmp_path / "before.DAT"
    before.write_bytes(ntuser["primary"])
    assert keys > _walk_python_registry(before)[0]  # the logs added keys
    # The same with LOG1 alone.
    assert recover(ntuser["primary"], logs[:1]).data == r.data


def test_system_b_is_refused(realdata):
    primary = realdata("regipy/SYSTEM_B.xz")
    logs = [realdata("regipy/SYSTEM_B.LOG1.xz"), realdata("regipy/SYSTEM_B.LOG2.xz")]
    with pytest.raises(LogError) as info:
        recover_files(primary, logs)
    assert info.value.expected == 1621
    assert "do not continue" in str(info.value)


def test_clean_hive_comes_back_unchanged(new_hive):
    r = recover(new_hive["oracle"], _new_logs(new_hive))
    assert r.data == new_hive["oracle"]
    assert r.applied_entries == [] and r.logs_used == [] and not r.was_dirty and r.format is None
    assert "not dirty" in r.warnings[0]


def test_damaged_entry_with_newer_entries_after_it_is_refused(new_hive):
    log2 = bytearray(new_hive["LOG2"])
    off = _entry_offsets(new_hive["LOG2"])[3]
    log2[off + 200] ^= 0x01  # a page byte of entry 3: Hash-1 mismatch, entries 4 and 5 follow
    with pytest.raises(LogError) as info:
        recover(new_hive["primary"], _new_logs(new_hive, log2=log2))
    assert "Hash-1" in str(info.value) and "3..5" in str(info.value)
    r = recover(new_hive["primary"], _new_logs(new_hive, log2=log2), allow_partial=True)
    assert r.applied_entries == [2]
    assert BaseBlock.parse(r.data).sequence1 == 3 and any("partial" in w for w in r.warnings)


def test_torn_last_entry_is_left_out_as_windows_does(new_hive):
    log2 = bytearray(new_hive["LOG2"])
    off = _entry_offsets(new_hive["LOG2"])[5]
    log2[off + 1000] ^= 0x80
    r = recover(new_hive["primary"], _new_logs(new_hive, log2=log2))
    assert r.applied_entries == [2, 3, 4]
    assert any("Hash-1" in w and "5" in w for w in r.warnings)
    assert BaseBlock.parse(r.data).sequence1 == 5


def test_damaged_entry_header_leaves_a_gap_and_is_refused(new_hive):
    log2 = bytearray(new_hive["LOG2"])
    off = _entry_offsets(new_hive["LOG2"])[4]
    log2[off + 13] ^= 0x01  # its sequence number: Hash-2 mismatch, so entry 4 is not seen at all
    with pytest.raises(LogError) as info:
        recover(new_hive["primary"], _new_logs(new_hive, log2=log2))
    assert "gap" in str(info.value)


def test_truncated_log_is_refused(new_hive):
    off = _entry_offsets(new_hive["LOG2"])[5]
    cut = new_hive["LOG2"][:off + 4096]
    with pytest.raises(LogError) as info:
        recover(new_hive["primary"], _new_logs(new_hive, log2=cut))
    assert "truncated" in str(info.value)
    assert recover(new_hive["primary"], _new_logs(new_hive, log2=cut), allow_partial=True).applied_entries == [2, 3, 4]
    # Cut inside the log's own base block: not a log any more, and entry 2 is in it.
    with pytest.raises(LogError):
        recover(new_hive["primary"], _new_logs(new_hive, log1=new_hive["LOG1"][:300]))


def test_logs_of_another_hive_are_refused(new_hive, ntuser, old_hive):
    with pytest.raises(LogError) as info:
        recover(ntuser["primary"], _new_logs(new_hive))
    assert info.value.expected == 566
    with pytest.raises(LogError):
        recover(old_hive["primary"], _new_logs(new_hive))
    with pytest.raises(LogError) as info:  # an old-format log of a different write
        recover(new_hive["primary"], [("OldDirtyHive.LOG1", old_hive["LOG1"])])
    assert "timestamp" in str(info.value).lower()


def test_dirty_hive_without_logs_is_refused(new_hive):
    with pytest.raises(LogError):
        recover(new_hive["primary"], [])
    with pytest.raises(LogError) as info:
        recover(new_hive["primary"], [("NewDirtyHive.LOG", b""), ("NewDirtyHive.LOG1", bytes(4096))])
    assert "NewDirtyHive.LOG" in str(info.value)


def test_damaged_primary_base_block_is_taken_from_a_log(new_hive):
    primary = bytearray(new_hive["primary"])
    primary[60] ^= 0xFF  # inside the file name: the checksum no longer matches [6]
    r = recover(bytes(primary), _new_logs(new_hive))
    assert r.base_block_from == "NewDirtyHive.LOG1"
    assert r.applied_entries == [2, 3, 4, 5]
    assert r.data == new_hive["oracle"]  # LOG1's first sector + type 0 + 6/6 is Windows' block


def test_sequence_numbers_wrap_at_32_bits(new_hive):
    """Entries numbered 0xFFFFFFFE, 0xFFFFFFFF, 0, 1 continue each other (forged test data:
    the real entries renumbered, their hashes recomputed)."""
    renumber = {2: 0xFFFFFFFE, 3: 0xFFFFFFFF, 4: 0, 5: 1}
    logs = {}
    for name in ("LOG1", "LOG2"):
        log = bytearray(new_hive[name])
        for seq, off in _entry_offsets(new_hive[name]).items():
            struct.pack_into("<I", log, off + 12, renumber[seq])
            _rehash(log, off)
        logs[name] = log
    primary = bytearray(new_hive["primary"])
    struct.pack_into("<II", primary, 4, 0xFFFFFFFF, 0xFFFFFFFE)
    block = BaseBlock.parse(bytes(primary)).updated()
    primary[:4096] = block.to_bytes()
    r = recover(bytes(primary), _new_logs(new_hive, logs["LOG1"], logs["LOG2"]))
    assert r.applied_entries == [0xFFFFFFFE, 0xFFFFFFFF, 0, 1]
    assert BaseBlock.parse(r.data).sequence1 == 2
    assert r.data[4096:] == new_hive["oracle"][4096:]


def test_entry_flags_and_size_go_to_the_base_block(new_hive):
    """Note 11: Flags come from the entry applied (forged: entry 5 given Flags 1)."""
    log2 = bytearray(new_hive["LOG2"])
    off = _entry_offsets(new_hive["LOG2"])[5]
    struct.pack_into("<I", log2, off + 8, 1)
    _rehash(log2, off)
    block = BaseBlock.parse(recover(new_hive["primary"], _new_logs(new_hive, log2=log2)).data)
    assert block.flags == 1 and block.hive_bins_size == 20480


def test_forged_entry_writing_a_bad_hive_bin_is_refused(new_hive):
    log2 = bytearray(new_hive["LOG2"])
    off = _entry_offsets(new_hive["LOG2"])[5]
    page_off, page_size = struct.unpack_from("<II", log2, off + 40)
    data_at = off + 40 + 8 * struct.unpack_from("<I", log2, off + 20)[0]
    # Point the page at hive bin 0 and spoil its "hbin" signature.
    struct.pack_into("<I", log2, off + 40, 0)
    log2[data_at:data_at + 4] = b"XXXX"
    _rehash(log2, off)
    with pytest.raises(LogError) as info:
        recover(new_hive["primary"], _new_logs(new_hive, log2=log2))
    assert info.value.field == "Signature"


def test_entry_outside_its_hive_bins_size_is_bogus(new_hive):
    log2 = bytearray(new_hive["LOG2"])
    off = _entry_offsets(new_hive["LOG2"])[5]
    struct.pack_into("<I", log2, off + 40, 0x7FFFF000)  # a page far beyond the hive bins size
    _rehash(log2, off)
    r = recover(new_hive["primary"], _new_logs(new_hive, log2=log2))
    assert r.applied_entries == [2, 3, 4]
    assert any("beyond the hive bins data size" in w for w in r.warnings)


# -- old format -----------------------------------------------------------------------------------

def test_old_format_matches_windows7_recovery(old_hive, tmp_path):
    r = recover(old_hive["primary"], [("OldDirtyHive.LOG1", old_hive["LOG1"]), ("OldDirtyHive.LOG2", b"")])
    assert r.format == "old" and r.logs_used == ["OldDirtyHive.LOG1"] and r.last_sequence == 5
    assert r.pages_applied == 64 and r.applied_entries == [64]
    ours, oracle = r.data, old_hive["oracle"]
    assert len(ours) == len(oracle)
    diff = [i for i in range(4096, len(oracle)) if ours[i] != oracle[i]]
    # Two fields differ, both written by Windows 7 after the replay, not by the replay:
    # 1. the first hive bin's Timestamp (bytes 20..27), the backup of the base block's Last
    #    written timestamp: Windows flushed the hive again later and stamped both with that time;
    hbin_stamp = range(4096 + 20, 4096 + 28)
    assert oracle[4096 + 20:4096 + 28] == oracle[12:20]  # = the oracle's own base block stamp
    assert ours[4096 + 20:4096 + 28] == ours[12:20]
    # 2. MaxValueNameLen of key_with_many_subkeys\4500 (nk at 0x6ad88, field at +4+60): the log's
    #    page says 0x18, Windows' load-time registry check set it to 2, the length in bytes of
    #    the key's only value name, "V".
    max_name = range(4096 + 0x6ad88 + 4 + 60, 4096 + 0x6ad88 + 4 + 64)
    assert struct.unpack_from("<I", oracle, max_name.start) == (2,)
    assert struct.unpack_from("<I", ours, max_name.start) == (0x18,)
    assert set(diff) <= set(hbin_stamp) | set(max_name)
    block = BaseBlock.parse(ours)
    assert block.checksum_ok and block.sequences_match and block.file_type == 0
    out = tmp_path / "old"
    out.write_bytes(ours)
    import hivex

    h = hivex.Hivex(str(out))
    many = h.node_get_child(h.root(), "key_with_many_subkeys")
    assert h.node_get_child(h.node_get_child(many, "5000"), "find_me_in_log")
    assert h.node_get_child(many, "1") is None
    assert _walk_hivex(out) == _walk_python_registry(out)


def test_old_format_log_must_match_the_primary_timestamp(old_hive):
    log = bytearray(old_hive["LOG1"])
    block = BaseBlock.parse(bytes(log[:512]))
    log[:512] = block.updated(timestamp=block.timestamp + 1).to_bytes()[:512]
    with pytest.raises(LogError) as info:
        recover(old_hive["primary"], [("OldDirtyHive.LOG1", bytes(log))])
    assert "timestamp" in str(info.value).lower()


def test_old_format_damaged_primary_base_block(old_hive):
    """Note 3: with a bad primary base block the first hive bin's Timestamp picks the log. In this
    hive it is older than the base block's (Windows stamps the bin less often), so no log applies."""
    primary = bytearray(old_hive["primary"])
    primary[60] ^= 0xFF
    with pytest.raises(LogError) as info:
        recover(bytes(primary), [("OldDirtyHive.LOG1", old_hive["LOG1"])])
    assert "timestamp" in str(info.value).lower()
    # ...and with the bin stamped like the log, the log's base block heads the result.
    primary[4096 + 20:4096 + 28] = old_hive["LOG1"][12:20]
    r = recover(bytes(primary), [("OldDirtyHive.LOG1", old_hive["LOG1"])])
    assert r.base_block_from == "OldDirtyHive.LOG1" and BaseBlock.parse(r.data).sequence1 == 5


def test_old_format_truncated_or_damaged_log_is_refused(old_hive):
    with pytest.raises(LogError) as info:
        recover(old_hive["primary"], [("OldDirtyHive.LOG1", old_hive["LOG1"][:20000])])
    assert "truncated" in str(info.value)
    log = bytearray(old_hive["LOG1"])
    log[1024:1028] = b"XXXX"  # the first dirty page is hive bin 0's header
    with pytest.raises(LogError) as info:
        recover(old_hive["primary"], [("OldDirtyHive.LOG1", bytes(log))])
    assert info.value.field == "Signature"
    log = bytearray(old_hive["LOG1"])
    log[512:516] = b"DIRX"
    with pytest.raises(LogError):
        recover(old_hive["primary"], [("OldDirtyHive.LOG1", bytes(log))])


# -- bad input never escapes as a traceback -------------------------------------------------------

def test_hopeless_inputs_give_typed_errors(new_hive):
    with pytest.raises(BaseBlockError):
        recover(b"regf" + bytes(100), _new_logs(new_hive))
    with pytest.raises(LogError):
        recover(new_hive["primary"], [("x.LOG1", b"garbage" * 1000)])
    with pytest.raises(LogError):
        recover(new_hive["primary"], [("x.LOG1", b"regf")])
    with pytest.raises(HiveError):  # primary and log both without a usable base block
        recover(bytes(8192), [("x.LOG1", b"\x01" * 8192)])


def test_random_damage_never_escapes_the_error_hierarchy(new_hive, old_hive):
    rng = random.Random(20240603)
    cases = [(new_hive["primary"], _new_logs(new_hive)),
             (old_hive["primary"], [("OldDirtyHive.LOG1", old_hive["LOG1"])])]
    outcomes = set()
    for i in range(120):
        primary, logs = cases[i % 2]
        logs = [(name, bytearray(data)) for name, data in logs]
        primary = bytearray(primary)
        target = rng.choice([primary] + [data for _, data in logs])
        for _ in range(rng.randint(1, 4)):
            where = rng.randrange(0, min(len(target), 40000))
            target[where] = rng.randrange(256)
        if rng.random() < 0.3:
            name, data = logs[0]
            logs[0] = (name, data[:rng.randrange(0, len(data))])
        try:
            r = recover(bytes(primary), [(n, bytes(d)) for n, d in logs], allow_partial=rng.random() < 0.5)
        except OfflineFixError as exc:
            outcomes.add(type(exc).__name__)
        else:
            block = BaseBlock.parse(r.data)
            assert block.checksum_ok and block.sequences_match
            outcomes.add("ok")
    assert "ok" in outcomes and "LogError" in outcomes


def test_log_with_another_hives_guids_is_not_applied(new_hive, old_hive):
    with pytest.raises(LogError) as info:
        recover(old_hive["primary"], _new_logs(new_hive))
    assert "belongs to another hive" in str(info.value)


def test_old_format_log_next_to_new_format_logs(new_hive, old_hive):
    ids = BaseBlock.parse(new_hive["primary"])
    stale = bytearray(old_hive["LOG1"])
    block = BaseBlock.parse(bytes(stale))
    stale[:512] = block.updated(rm_id=ids.rm_id, log_id=ids.log_id, tm_id=ids.tm_id).to_bytes()[:512]
    logs = _new_logs(new_hive) + [("NewDirtyHive.LOG", bytes(stale))]
    r = recover(new_hive["primary"], logs)  # a leftover of another write: ignored, said so
    assert r.data == new_hive["oracle"]
    assert any("NewDirtyHive.LOG" in w and "ignored" in w for w in r.warnings)
    stale[:512] = BaseBlock.parse(bytes(stale)).updated(timestamp=ids.timestamp).to_bytes()[:512]
    with pytest.raises(LogError):  # both kinds would apply: a contradiction, refused
        recover(new_hive["primary"], _new_logs(new_hive) + [("NewDirtyHive.LOG", bytes(stale))])


def test_recover_files_finds_the_logs_and_reports_missing_files(realdata, tmp_path):
    r = recover_files(realdata(NEW + "NewDirtyHive"))
    assert r.applied_entries == [2, 3, 4, 5]
    json.dumps(recover_files(realdata(OLD + "OldDirtyHive")).to_dict())
    with pytest.raises(NotFound):
        recover_files(tmp_path / "nothing")
    with pytest.raises(NotFound):
        recover_files(realdata(NEW + "NewDirtyHive"), [tmp_path / "nothing.LOG1"])


def test_the_same_log_twice_is_harmless(new_hive):
    logs = _new_logs(new_hive)
    r = recover(new_hive["primary"], [logs[0], logs[1], logs[1]])
    assert r.data == new_hive["oracle"] and r.applied_entries == [2, 3, 4, 5]
