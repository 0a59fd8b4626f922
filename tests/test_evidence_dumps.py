"""Crash dump headers. No public kernel dump exists (MANIFEST.md, "Looked for, not found"), so kernel
dumps are built here from the layout Microsoft publishes in ntiodump.h, with every offset written out
literally below (not taken from offline_fix), and the real user-mode minidump from plaso is used for
the "wrong kind of .dmp" case."""

from __future__ import annotations

import io
import json
import struct
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offline_fix.errors import CorruptInput, NotFound
from offline_fix.evidence import dumps
from offline_fix.evidence.dumps import DumpError, KernelDump, UserModeDump, read_dump, read_dumps

CRASH_TIME = datetime(2024, 3, 5, 6, 7, 8, tzinfo=timezone.utc)
FILETIME = (int(CRASH_TIME.timestamp()) + 11644473600) * 10_000_000
PAGE = b"PAGE"


def _fill(size: int) -> bytearray:
    # Windows pre-fills the dump header with the word "PAGE" before writing the fields.
    return bytearray(PAGE * (size // 4))


def _dump_string(name: str) -> bytes:
    # DUMP_STRING: ULONG length (characters, as the kernel writes it), UTF-16LE text, NUL.
    return struct.pack("<I", len(name)) + name.encode("utf-16-le") + b"\0\0"


def build64(code, params, dump_type=1, *, build=14393, processors=4, time=FILETIME, modules=(),
            extra=0x3000, summary_sig=b"SDMP", trgd=True) -> bytes:
    """A DUMP_HEADER64 (0x2000 bytes) and what follows it, at the offsets of ntiodump.h."""
    h = _fill(0x2000)
    h[0:8] = b"PAGEDU64"
    struct.pack_into("<II", h, 0x08, 0xF, build)  # MajorVersion (free), MinorVersion (build)
    struct.pack_into("<Q", h, 0x10, 0x1AA000)  # DirectoryTableBase
    struct.pack_into("<III", h, 0x30, 0x8664, processors, code)  # MachineImageType, NumberProcessors, BugCheckCode
    struct.pack_into("<4Q", h, 0x40, *params)  # BugCheckParameter1..4
    struct.pack_into("<I", h, 0xF98, dump_type)  # DumpType
    struct.pack_into("<q", h, 0xFA8, time)  # SystemTime
    struct.pack_into("<q", h, 0x1030, 36_000_000_000)  # SystemUpTime: one hour
    body = bytearray(extra)
    if dump_type in (2, 5, 6):
        body[0:8] = summary_sig + b"DUMP"
    if dump_type == 4:
        body = _triage64(modules, trgd)
    data = bytes(h) + bytes(body)
    struct.pack_into("<q", h, 0xFA0, len(data))  # RequiredDumpSpace
    return bytes(h) + bytes(body)


def _triage64(modules, trgd) -> bytearray:
    # TRIAGE_DUMP64 at 0x2000 (0x80 bytes); driver list at 0x2100 (DUMP_DRIVER_ENTRY64, 0x90 each);
    # string pool after it; the "TRGD" marker in the last 4 bytes (ValidOffset = SizeOfDump - 4).
    list_at = 0x2100
    pool_at = list_at + 0x90 * len(modules)
    pool = bytearray()
    entries = bytearray()
    for name, base, size in modules:
        entry = bytearray(0x90)
        struct.pack_into("<I", entry, 0x00, pool_at + len(pool))  # DriverNameOffset
        struct.pack_into("<Q", entry, 0x38, base)  # LdrEntry.DllBase
        struct.pack_into("<I", entry, 0x48, size)  # LdrEntry.SizeOfImage
        struct.pack_into("<I", entry, 0x80, 0x1234)  # LdrEntry.CheckSum
        struct.pack_into("<I", entry, 0x88, 0x5F00AA00)  # LdrEntry.TimeDateStamp
        entries += entry
        pool += _dump_string(name) + b"\0" * 2
    total = pool_at + len(pool) + 8
    body = bytearray(total - 0x2000)
    struct.pack_into("<III", body, 0x00, 0, total, total - 4)  # ServicePackBuild, SizeOfDump, ValidOffset
    struct.pack_into("<II", body, 0x30, list_at if modules else 0, len(modules))  # DriverListOffset, DriverCount
    struct.pack_into("<II", body, 0x38, pool_at, len(pool))  # StringPoolOffset, StringPoolSize
    body[list_at - 0x2000:pool_at - 0x2000] = entries
    body[pool_at - 0x2000:pool_at - 0x2000 + len(pool)] = pool
    body[-4:] = b"TRGD" if trgd else b"XXXX"
    return body


def build32(code, params, dump_type=1, *, build=7601, modules=(), time=FILETIME) -> bytes:
    """A DUMP_HEADER32 (0x1000 bytes, 4-byte packing) and what follows it."""
    h = _fill(0x1000)
    h[0:8] = b"PAGEDUMP"
    struct.pack_into("<II", h, 0x08, 0xF, build)
    struct.pack_into("<III", h, 0x20, 0x14C, 2, code)  # MachineImageType, NumberProcessors, BugCheckCode
    struct.pack_into("<4I", h, 0x2C, *params)
    struct.pack_into("<I", h, 0xF88, dump_type)  # DumpType
    struct.pack_into("<q", h, 0xFC0, time)  # SystemTime
    body = bytearray(0x2000)
    if dump_type == 4:
        # TRIAGE_DUMP32 at 0x1000; DUMP_DRIVER_ENTRY32 (0x4C each) at 0x1100; pool after it.
        list_at, pool_at = 0x1100, 0x1100 + 0x4C * len(modules)
        pool = bytearray()
        for i, (name, base, size) in enumerate(modules):
            at = list_at - 0x1000 + i * 0x4C
            struct.pack_into("<I", body, at + 0x00, pool_at + len(pool))  # DriverNameOffset
            struct.pack_into("<I", body, at + 0x1C, base)  # LdrEntry.DllBase
            struct.pack_into("<I", body, at + 0x24, size)  # LdrEntry.SizeOfImage
            pool += _dump_string(name)
        body[pool_at - 0x1000:pool_at - 0x1000 + len(pool)] = pool
        total = 0x1000 + len(body)
        struct.pack_into("<III", body, 0x00, 0, total, total - 4)
        struct.pack_into("<IIII", body, 0x30, list_at, len(modules), pool_at, len(pool))
        body[-4:] = b"TRGD"
    struct.pack_into("<q", h, 0xFA0, 0x1000 + len(body))  # RequiredDumpSpace
    return bytes(h) + bytes(body)


def _write(tmp_path, data: bytes, name="dump.dmp"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


MODULES64 = [
    ("\\SystemRoot\\system32\\ntoskrnl.exe", 0xFFFFF80000000000, 0xA00000),
    ("\\SystemRoot\\System32\\drivers\\HASPNT.sys", 0xFFFFF80012340000, 0x20000),
    ("\\SystemRoot\\System32\\drivers\\filecrypt.sys", 0xFFFFF80020000000, 0x18000),
]


# -- 64-bit kernel dumps --------------------------------------------------------------------


def test_full_dump_64(tmp_path):
    d = read_dump(_write(tmp_path, build64(0x5A, (1, 2, 3, 4), dump_type=1)))
    assert isinstance(d, KernelDump)
    assert (d.bits, d.build, d.machine, d.processors, d.free_build) == (64, 14393, "x64", 4, True)
    assert d.bugcheck.code == 0x5A and d.bugcheck.name == "CRITICAL_SERVICE_FAILED"
    assert d.parameters == (1, 2, 3, 4)
    assert d.dump_type == 1 and d.dump_type_name == "full"
    assert d.system_time == CRASH_TIME
    assert d.uptime_seconds == 3600
    assert d.modules is None and d.faulting_module is None
    assert any("WinDbg" in note for note in d.cannot_tell)
    assert d.findings == []


@pytest.mark.parametrize("dump_type, name, sig", [(2, "kernel", b"SDMP"), (5, "bitmap-full", b"FDMP"), (6, "bitmap-kernel", b"SDMP")])
def test_kernel_and_bitmap_dumps(tmp_path, dump_type, name, sig):
    d = read_dump(_write(tmp_path, build64(0x7B, (0xFFFF8000DEAD0000, 0xC0000034, 0, 0), dump_type=dump_type, summary_sig=sig)))
    assert d.dump_type_name == name
    assert d.bugcheck.name == "INACCESSIBLE_BOOT_DEVICE"
    assert d.parameters[1] == 0xC0000034
    assert d.findings == []


def test_bitmap_dump_without_its_second_header_is_reported(tmp_path):
    d = read_dump(_write(tmp_path, build64(0x7B, (0, 0, 0, 0), dump_type=5, summary_sig=b"\0\0\0\0")))
    assert [f.code for f in d.findings] == ["dump-bad-bitmap-header"]


def test_small_dump_64_names_the_faulting_module(tmp_path):
    fault = 0xFFFFF80012340000 + 0x1A2B
    d = read_dump(_write(tmp_path, build64(0x7E, (0xC0000005, fault, 0xFFFFD000AAAA0000, 0), dump_type=4, modules=MODULES64)))
    assert d.is_small and d.dump_type_name == "small"
    assert [m.name for m in d.modules] == ["ntoskrnl.exe", "HASPNT.sys", "filecrypt.sys"]
    assert d.modules[1].base == 0xFFFFF80012340000 and d.modules[1].size == 0x20000
    assert d.modules[1].timestamp == 0x5F00AA00
    assert d.bugcheck.name == "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED"
    assert d.faulting_module == "HASPNT.sys"
    assert d.fault_address == fault and d.fault_offset == 0x1A2B
    assert "faulting module HASPNT.sys" in d.summary
    assert d.findings == []


def test_minidump_variant_code_uses_the_same_parameter(tmp_path):
    fault = 0xFFFFF80020000000 + 0x10
    d = read_dump(_write(tmp_path, build64(0x1000007E, (0xC0000005, fault, 0, 0), dump_type=4, modules=MODULES64)))
    assert d.bugcheck.name == "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED_M"
    assert d.faulting_module == "filecrypt.sys"


def test_small_dump_without_address_parameter_says_so(tmp_path):
    d = read_dump(_write(tmp_path, build64(0x133, (1, 0x1E00, 0, 0), dump_type=4, modules=MODULES64)))
    assert len(d.modules) == 3
    assert d.faulting_module is None
    assert any("carries no faulting address" in n for n in d.cannot_tell)


def test_small_dump_address_outside_modules(tmp_path):
    d = read_dump(_write(tmp_path, build64(0xD1, (0, 2, 0, 0xFFFFF80099990000), dump_type=4, modules=MODULES64)))
    assert d.faulting_module is None and d.fault_address == 0xFFFFF80099990000
    assert any("in no loaded module" in n for n in d.cannot_tell)


def test_small_dump_with_zero_fault_parameter(tmp_path):
    d = read_dump(_write(tmp_path, build64(0x50, (0xFFFF0000, 0, 0, 2), dump_type=4, modules=MODULES64)))
    assert d.fault_address is None
    assert any("parameter 3 is zero" in n for n in d.cannot_tell)


def test_small_dump_with_wrong_marker_is_not_trusted(tmp_path):
    d = read_dump(_write(tmp_path, build64(0x7E, (0, 0xFFFFF80012340010, 0, 0), dump_type=4, modules=MODULES64, trgd=False)))
    assert d.modules is None
    assert any("TRGD" in n for n in d.cannot_tell)


def test_small_dump_without_driver_list(tmp_path):
    d = read_dump(_write(tmp_path, build64(0x7E, (0, 0xFFFFF80012340010, 0, 0), dump_type=4, modules=())))
    assert d.modules is None
    assert any("no driver list" in n for n in d.cannot_tell)


def test_small_dump_cut_inside_driver_list(tmp_path):
    data = build64(0x7E, (0, 0xFFFFF80012340010, 0, 0), dump_type=4, modules=MODULES64)
    d = read_dump(_write(tmp_path, data[:0x2100 + 0x90 * 2 + 8]))
    assert [m.base for m in d.modules] == [0xFFFFF80000000000, 0xFFFFF80012340000]
    assert "dump-truncated" in {f.code for f in d.findings}
    # the names live in the missing string pool: placeholders and findings, no exception
    assert d.modules[0].name.startswith("<driver")


# -- 32-bit kernel dumps --------------------------------------------------------------------


def test_full_dump_32(tmp_path):
    d = read_dump(_write(tmp_path, build32(0x7B, (0x80F1A2B0, 0xC0000034, 0, 0))))
    assert (d.bits, d.build, d.machine, d.processors) == (32, 7601, "x86", 2)
    assert d.bugcheck.label == "0x0000007B INACCESSIBLE_BOOT_DEVICE"
    assert d.parameters == (0x80F1A2B0, 0xC0000034, 0, 0)
    assert d.system_time == CRASH_TIME
    assert d.dump_type_name == "full"


def test_small_dump_32(tmp_path):
    modules = [("\\WINDOWS\\system32\\ntkrnlpa.exe", 0x804D7000, 0x1F8000), ("\\SystemRoot\\system32\\DRIVERS\\mfehidk.sys", 0xF7A10000, 0x40000)]
    d = read_dump(_write(tmp_path, build32(0xD1, (0x10, 2, 0, 0xF7A10123), dump_type=4, modules=modules)))
    assert [m.name for m in d.modules] == ["ntkrnlpa.exe", "mfehidk.sys"]
    assert d.faulting_module == "mfehidk.sys" and d.fault_offset == 0x123


def test_unwritten_fields_are_not_invented(tmp_path):
    data = bytearray(build64(0x7E, (0, 0, 0, 0), dump_type=1))
    data[0xF98:0xF9C] = PAGE  # DumpType never written
    data[0xFA8:0xFB0] = PAGE * 2  # SystemTime never written
    d = read_dump(_write(tmp_path, bytes(data)))
    assert d.dump_type is None and d.dump_type_name == "unknown"
    assert d.system_time is None
    assert d.timeline_entries() == []
    assert any("no crash time" in n for n in d.cannot_tell)


def test_unknown_bugcheck_is_reported_as_unknown(tmp_path):
    d = read_dump(_write(tmp_path, build64(0x10001, (0, 0, 0, 0))))
    assert not d.bugcheck.known and d.bugcheck.name == "UNKNOWN_BUGCHECK"


def test_truncated_full_dump_is_a_finding(tmp_path):
    data = build64(0x5A, (0, 0, 0, 0), dump_type=1)
    d = read_dump(_write(tmp_path, data[:0x2000 + 0x100]))
    assert [f.code for f in d.findings] == ["dump-truncated"]


# -- user-mode minidump (real, from plaso) ---------------------------------------------------


@pytest.mark.realdata
def test_wer_minidump_is_user_mode(realdata):
    d = read_dump(realdata("plaso/WER1090.tmp.mdmp.xz"))
    assert isinstance(d, UserModeDump) and d.kind == "user-mode"
    assert d.streams == 9  # MANIFEST.md: MDMP, 9 streams, 2015-09-05
    assert d.time.date().isoformat() == "2015-09-05"
    assert "ModuleList" in d.stream_types and "Exception" in d.stream_types
    assert d.timeline_entries() == []
    assert "not the kernel" in d.summary


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("data, words", [
    (b"", "empty file"),
    (bytes(4096), "never written"),
    (b"MZ\x90\x00" + bytes(200), "not a crash dump"),
    (b"PAGEDU64" + bytes(100), "runs past the end"),
    (b"PAGEDUMP" + bytes(0xF00), "runs past the end"),
    (b"MDMP\x93\xa7", "truncated"),
])
def test_bad_input_is_a_typed_error(tmp_path, data, words):
    with pytest.raises(DumpError) as info:
        read_dump(_write(tmp_path, data))
    assert isinstance(info.value, CorruptInput) and info.value.exit_code == 5
    assert words in str(info.value)


def test_missing_file_is_not_found(tmp_path):
    with pytest.raises(NotFound):
        read_dump(tmp_path / "nope.dmp")


def test_file_object_input():
    d = read_dump(io.BytesIO(build64(0x9F, (3, 0, 0, 0))), name="MEMORY.DMP")
    assert d.path == "MEMORY.DMP" and d.bugcheck.name == "DRIVER_POWER_STATE_FAILURE"


def test_read_dumps_keeps_going(tmp_path):
    good = _write(tmp_path, build64(0x7E, (0, 0, 0, 0)), "a.dmp")
    bad = _write(tmp_path, b"garbage!" * 10, "b.dmp")
    result = read_dumps([good, bad, tmp_path / "missing.dmp"])
    assert len(result.dumps) == 1 and len(result.kernel_dumps) == 1
    assert [f.code for f in result.findings] == ["dump-unreadable", "dump-unreadable"]
    json.dumps(result.to_dict())


def test_to_dict_and_timeline(tmp_path):
    d = read_dump(_write(tmp_path, build64(0x7E, (0xC0000005, 0xFFFFF80012340010, 0, 0), dump_type=4, modules=MODULES64)))
    doc = json.loads(json.dumps(d.to_dict()))
    assert doc["bugcheck"]["code_hex"] == "0x0000007E"
    assert doc["parameters"][1] == "0xfffff80012340010"
    assert doc["time"] == "2024-03-05T06:07:08Z"
    assert doc["faulting_module"] == "HASPNT.sys"
    (entry,) = d.timeline_entries()
    assert entry.kind == "crash" and entry.subject == "HASPNT.sys" and entry.time == CRASH_TIME


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=0, max_size=0x2400), st.sampled_from([b"PAGEDU64", b"PAGEDUMP", b"MDMP"]))
def test_random_bodies_never_escape(body, sig):
    try:
        read_dump(io.BytesIO(sig + body))
    except DumpError:
        pass


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_mutated_small_dumps_never_escape(data):
    raw = bytearray(build64(0x7E, (0, 0xFFFFF80012340010, 0, 0), dump_type=4, modules=MODULES64))
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0x1FF0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0x2000, len(raw)))
    try:
        read_dump(io.BytesIO(bytes(raw[:cut])))
    except DumpError:
        pass


def test_layouts_match_documented_sizes():
    assert dumps.DUMP_HEADER32.size == 0x1000 and dumps.DUMP_HEADER64.size == 0x2000
    assert dumps.TRIAGE_DUMP64.size == 0x80 and dumps.DUMP_DRIVER_ENTRY64.size == 0x90
    assert dumps.DUMP_DRIVER_ENTRY32.size == 0x4C and dumps.MINIDUMP_HEADER.size == 0x20
