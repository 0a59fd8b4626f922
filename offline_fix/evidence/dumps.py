"""Crash dump headers: kernel dumps (MEMORY.DMP, Minidump\\*.dmp) and user-mode minidumps.

What a dump header tells without symbols: the bug check code and its four parameters, the time,
the OS build, the processor type and count, and what kind of dump it is. A small ("triage") dump
also carries the list of loaded drivers, so the faulting module can be named when the bug check's
documented parameters hold the faulting address. Everything else (the call stack, the module list
of a full or kernel dump, which lives in the captured memory) needs a debugger and symbols; this
module says so in ``cannot_tell`` instead of guessing.

Layouts (all little-endian), as published by Microsoft in ntiodump.h (DUMP_HEADER32/64,
SUMMARY_DUMP, TRIAGE_DUMP32/64, DUMP_DRIVER_ENTRY, DUMP_STRING; the Windows Research Kernel and the
WDK headers carry it) and in minidumpapiset.h (MINIDUMP_HEADER,
https://learn.microsoft.com/windows/win32/api/minidumpapiset/ns-minidumpapiset-minidump_header).
The kinds of dump are described in "Varieties of Kernel-Mode Dump Files"
(https://learn.microsoft.com/windows-hardware/drivers/debugger/varieties-of-kernel-mode-dump-files).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Iterable

from offline_fix.errors import CorruptInput, NotFound, PermissionDenied, input_file
from offline_fix.evidence import bugchecks
from offline_fix.evidence.timeline import CRASH, WARNING, Entry, Finding, filetime_to_datetime, iso

# --------------------------------------------------------------------------------------------
# Errors


class DumpError(CorruptInput):
    """A crash dump that cannot be read: wrong signature, truncated header, bad offsets."""


class DumpTruncated(DumpError):
    """The file ends before a structure that its header says is there."""


# --------------------------------------------------------------------------------------------
# Structures, declared once. Each layout lists (offset, Microsoft field name, struct code);
# gaps between fields are padding or fields we do not read, and Layout checks at import that the
# offsets are increasing and that the total matches the documented size.


class Layout:
    def __init__(self, name: str, size: int, fields: list[tuple[int, str, str]]) -> None:
        fmt = "<"
        at = 0
        names = []
        for offset, fname, code in fields:
            if offset < at:
                raise AssertionError(f"{name}.{fname} at {offset:#x} overlaps the previous field (ends {at:#x})")
            if offset > at:
                fmt += f"{offset - at}x"
            fmt += code
            names.append(fname)
            at = offset + struct.calcsize("<" + code)
        if at > size:
            raise AssertionError(f"{name} fields end at {at:#x}, past its size {size:#x}")
        fmt += f"{size - at}x" if size > at else ""
        self.name = name
        self.size = size
        self.names = names
        self.struct = struct.Struct(fmt)
        if self.struct.size != size:
            raise AssertionError(f"{name}: struct size {self.struct.size:#x} != documented {size:#x}")

    def unpack(self, data: bytes) -> dict:
        return dict(zip(self.names, self.struct.unpack(data)))


DUMP_HEADER32 = Layout("DUMP_HEADER32", 0x1000, [
    (0x000, "Signature", "4s"),  # "PAGE"
    (0x004, "ValidDump", "4s"),  # "DUMP"
    (0x008, "MajorVersion", "I"),  # 0xF free build, 0xC checked build
    (0x00C, "MinorVersion", "I"),  # OS build number
    (0x010, "DirectoryTableBase", "I"),
    (0x014, "PfnDataBase", "I"),
    (0x018, "PsLoadedModuleList", "I"),
    (0x01C, "PsActiveProcessHead", "I"),
    (0x020, "MachineImageType", "I"),
    (0x024, "NumberProcessors", "I"),
    (0x028, "BugCheckCode", "I"),
    (0x02C, "BugCheckParameter1", "I"),
    (0x030, "BugCheckParameter2", "I"),
    (0x034, "BugCheckParameter3", "I"),
    (0x038, "BugCheckParameter4", "I"),
    (0x03C, "VersionUser", "32s"),
    (0x05C, "PaeEnabled", "B"),
    (0x060, "KdDebuggerDataBlock", "I"),
    # 0x064 PhysicalMemoryBlock[700], 0x320 ContextRecord[1200], 0x7D0 EXCEPTION_RECORD32
    (0x820, "Comment", "128s"),
    # 0x8A0 _reserved0[1768]
    (0xF88, "DumpType", "I"),
    (0xF8C, "MiniDumpFields", "I"),
    (0xF90, "SecondaryDataState", "I"),
    (0xF94, "ProductType", "I"),
    (0xF98, "SuiteMask", "I"),
    # 0xF9C _reserved1[4]
    (0xFA0, "RequiredDumpSpace", "q"),
    # 0xFA8 _reserved2[16]
    (0xFB8, "SystemUpTime", "q"),
    (0xFC0, "SystemTime", "q"),
    # 0xFC8 _reserved3[56]
])

DUMP_HEADER64 = Layout("DUMP_HEADER64", 0x2000, [
    (0x000, "Signature", "4s"),  # "PAGE"
    (0x004, "ValidDump", "4s"),  # "DU64"
    (0x008, "MajorVersion", "I"),
    (0x00C, "MinorVersion", "I"),  # OS build number
    (0x010, "DirectoryTableBase", "Q"),
    (0x018, "PfnDataBase", "Q"),
    (0x020, "PsLoadedModuleList", "Q"),
    (0x028, "PsActiveProcessHead", "Q"),
    (0x030, "MachineImageType", "I"),
    (0x034, "NumberProcessors", "I"),
    (0x038, "BugCheckCode", "I"),
    (0x040, "BugCheckParameter1", "Q"),
    (0x048, "BugCheckParameter2", "Q"),
    (0x050, "BugCheckParameter3", "Q"),
    (0x058, "BugCheckParameter4", "Q"),
    (0x060, "VersionUser", "32s"),
    (0x080, "KdDebuggerDataBlock", "Q"),
    # 0x088 PhysicalMemoryBlock[700] (+pad), 0x348 ContextRecord[3000], 0xF00 EXCEPTION_RECORD64
    (0xF98, "DumpType", "I"),
    (0xFA0, "RequiredDumpSpace", "q"),
    (0xFA8, "SystemTime", "q"),
    (0xFB0, "Comment", "128s"),
    (0x1030, "SystemUpTime", "q"),
    (0x1038, "MiniDumpFields", "I"),
    (0x103C, "SecondaryDataState", "I"),
    (0x1040, "ProductType", "I"),
    (0x1044, "SuiteMask", "I"),
    (0x1048, "WriterStatus", "I"),
    # 0x104C .. 0x2000 reserved
])

# The header that follows DUMP_HEADER in kernel ("summary", type 2) and bitmap (types 5, 6) dumps:
# SUMMARY_DUMP in ntiodump.h; bitmap dumps keep the same signature pair ("SDMP" kernel bitmap,
# "FDMP" full bitmap, then "DUMP").
SUMMARY_DUMP = Layout("SUMMARY_DUMP", 0x18, [
    (0x00, "Signature", "4s"),
    (0x04, "ValidDump", "4s"),
    (0x08, "DumpOptions", "I"),
    (0x0C, "HeaderSize", "I"),
    (0x10, "BitmapSize", "I"),
    (0x14, "Pages", "I"),
])

# TRIAGE_DUMP32 and TRIAGE_DUMP64 share their first 18 ULONGs. All offsets in a triage dump are
# file offsets (the DUMP_HEADER is part of the dump).
_TRIAGE_COMMON = [
    (0x00, "ServicePackBuild", "I"),
    (0x04, "SizeOfDump", "I"),
    (0x08, "ValidOffset", "I"),  # offset of the "TRGD" marker, the last ULONG of the dump
    (0x0C, "ContextOffset", "I"),
    (0x10, "ExceptionOffset", "I"),
    (0x14, "MmOffset", "I"),
    (0x18, "UnloadedDriversOffset", "I"),
    (0x1C, "PrcbOffset", "I"),
    (0x20, "ProcessOffset", "I"),
    (0x24, "ThreadOffset", "I"),
    (0x28, "CallStackOffset", "I"),
    (0x2C, "SizeOfCallStack", "I"),
    (0x30, "DriverListOffset", "I"),
    (0x34, "DriverCount", "I"),
    (0x38, "StringPoolOffset", "I"),
    (0x3C, "StringPoolSize", "I"),
    (0x40, "BrokenDriverOffset", "I"),  # always written as 0
    (0x44, "TriageOptions", "I"),
]

TRIAGE_DUMP32 = Layout("TRIAGE_DUMP32", 0x68, _TRIAGE_COMMON + [
    (0x48, "TopOfStack", "I"),
    (0x4C, "DataPageAddress", "I"),
    (0x50, "DataPageOffset", "I"),
    (0x54, "DataPageSize", "I"),
    (0x58, "DebuggerDataOffset", "I"),
    (0x5C, "DebuggerDataSize", "I"),
    (0x60, "DataBlocksOffset", "I"),
    (0x64, "DataBlocksCount", "I"),
])

TRIAGE_DUMP64 = Layout("TRIAGE_DUMP64", 0x80, _TRIAGE_COMMON + [
    (0x48, "TopOfStack", "Q"),
    (0x50, "BStoreOffset", "I"),  # ArchitectureSpecific.Ia64
    (0x54, "SizeOfBStore", "I"),
    (0x58, "LimitOfBStore", "Q"),
    (0x60, "DataPageAddress", "Q"),
    (0x68, "DataPageOffset", "I"),
    (0x6C, "DataPageSize", "I"),
    (0x70, "DebuggerDataOffset", "I"),
    (0x74, "DebuggerDataSize", "I"),
    (0x78, "DataBlocksOffset", "I"),
    (0x7C, "DataBlocksCount", "I"),
])

# DUMP_DRIVER_ENTRY32 = DriverNameOffset + KLDR_DATA_TABLE_ENTRY32 (ntldr.h)
DUMP_DRIVER_ENTRY32 = Layout("DUMP_DRIVER_ENTRY32", 0x4C, [
    (0x00, "DriverNameOffset", "I"),  # file offset of a DUMP_STRING
    # 0x04 LdrEntry: InLoadOrderLinks, __Undefined1..3, NonPagedDebugInfo
    (0x1C, "DllBase", "I"),
    (0x20, "EntryPoint", "I"),
    (0x24, "SizeOfImage", "I"),
    # 0x28 FullDllName, 0x30 BaseDllName (UNICODE_STRING32, pointers into the dead system)
    (0x38, "Flags", "I"),
    (0x3C, "LoadCount", "H"),
    (0x44, "CheckSum", "I"),
    (0x48, "TimeDateStamp", "I"),
])

# DUMP_DRIVER_ENTRY64 = DriverNameOffset, __alignment, KLDR_DATA_TABLE_ENTRY64
DUMP_DRIVER_ENTRY64 = Layout("DUMP_DRIVER_ENTRY64", 0x90, [
    (0x00, "DriverNameOffset", "I"),
    # 0x08 LdrEntry: InLoadOrderLinks(16), __Undefined1..3, NonPagedDebugInfo
    (0x38, "DllBase", "Q"),
    (0x40, "EntryPoint", "Q"),
    (0x48, "SizeOfImage", "I"),
    # 0x50 FullDllName, 0x60 BaseDllName (UNICODE_STRING64)
    (0x70, "Flags", "I"),
    (0x74, "LoadCount", "H"),
    # 0x78 __Undefined6
    (0x80, "CheckSum", "I"),
    (0x88, "TimeDateStamp", "I"),
])

MINIDUMP_HEADER = Layout("MINIDUMP_HEADER", 0x20, [
    (0x00, "Signature", "4s"),  # "MDMP"
    (0x04, "Version", "I"),  # low word MINIDUMP_VERSION (42899), high word implementation specific
    (0x08, "NumberOfStreams", "I"),
    (0x0C, "StreamDirectoryRva", "I"),
    (0x10, "CheckSum", "I"),
    (0x14, "TimeDateStamp", "I"),  # time_t, UTC
    (0x18, "Flags", "Q"),  # MINIDUMP_TYPE
])

MINIDUMP_DIRECTORY = Layout("MINIDUMP_DIRECTORY", 0x0C, [
    (0x00, "StreamType", "I"),
    (0x04, "DataSize", "I"),  # MINIDUMP_LOCATION_DESCRIPTOR
    (0x08, "Rva", "I"),
])

SIG_DUMP32 = b"PAGEDUMP"
SIG_DUMP64 = b"PAGEDU64"
SIG_MINIDUMP = b"MDMP"
SIG_USERDUMP = (b"USERDUMP", b"USERDU64")  # the pre-minidump user-mode format (ntiodump.h)
TRIAGE_VALID = b"TRGD"  # TRIAGE_DUMP_VALID ('DGRT') as stored
PAGE_FILLER = 0x45474150  # "PAGE": Windows fills unused header fields with it

DUMP_TYPES = {
    1: "full",  # complete memory dump
    2: "kernel",  # "summary": kernel memory dump
    3: "header-only",
    4: "small",  # triage dump / minidump (Windows\Minidump)
    5: "bitmap-full",  # complete memory dump, bitmap format
    6: "bitmap-kernel",  # kernel or automatic memory dump, bitmap format
    8: "kernel-memory",  # newer live/debugger formats (.dump /k ...)
    9: "kernel-and-user-memory",
    10: "complete-memory",
}
SMALL_DUMP = 4

MACHINES = {0x014C: "x86", 0x8664: "x64", 0xAA64: "ARM64", 0x01C4: "ARM"}

MINIDUMP_STREAMS = {
    3: "ThreadList", 4: "ModuleList", 5: "MemoryList", 6: "Exception", 7: "SystemInfo",
    8: "ThreadExList", 9: "Memory64List", 10: "CommentA", 11: "CommentW", 12: "HandleData",
    13: "FunctionTable", 14: "UnloadedModuleList", 15: "MiscInfo", 16: "MemoryInfoList",
    17: "ThreadInfoList", 18: "HandleOperationList", 19: "Token", 21: "SystemMemoryInfo",
    22: "ProcessVmCounters",
}

# Bounds: a triage dump of today's Windows lists a few hundred drivers; names are short paths.
MAX_DRIVERS = 8192
MAX_NAME_CHARS = 1024
MAX_STREAMS = 4096

# --------------------------------------------------------------------------------------------
# Bounded reader


class _Reader:
    """Every byte of a dump is read here: exactly ``size`` bytes at ``offset`` or DumpTruncated."""

    def __init__(self, fileobj: BinaryIO, name: str) -> None:
        self.f = fileobj
        self.name = name
        self.f.seek(0, os.SEEK_END)
        self.size = self.f.tell()

    def read(self, offset: int, size: int, what: str) -> bytes:
        if offset < 0 or size < 0 or offset + size > self.size:
            raise DumpTruncated(
                f"{what} runs past the end of the file",
                path=self.name, offset=offset, field=what,
                expected=f"{size} bytes", found=f"{max(0, self.size - max(offset, 0))} bytes",
            )
        self.f.seek(offset)
        data = self.f.read(size)
        if len(data) != size:
            raise DumpTruncated(
                f"short read of {what}", path=self.name, offset=offset, field=what,
                expected=f"{size} bytes", found=f"{len(data)} bytes",
            )
        return data

    def struct(self, layout: Layout, offset: int) -> dict:
        return layout.unpack(self.read(offset, layout.size, layout.name))


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class LoadedModule:
    """A driver from a small dump's driver list."""

    name: str
    base: int
    size: int
    checksum: int
    timestamp: int  # PE TimeDateStamp of the loaded image

    def contains(self, address: int) -> bool:
        return self.base <= address < self.base + self.size

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "base": f"{self.base:#x}",
            "size": self.size,
            "checksum": f"{self.checksum:#010x}",
            "timestamp": self.timestamp,
        }


@dataclass
class KernelDump:
    """A kernel-mode crash dump (PAGEDUMP / PAGEDU64) as far as its headers tell."""

    path: str
    bits: int
    build: int
    free_build: bool | None
    machine: str
    processors: int
    bugcheck: bugchecks.BugCheck
    parameters: tuple[int, int, int, int]
    dump_type: int | None
    dump_type_name: str
    system_time: datetime | None
    uptime_seconds: float | None
    required_dump_space: int | None
    file_size: int
    comment: str | None = None
    modules: list[LoadedModule] | None = None  # only small dumps carry them
    faulting_module: str | None = None
    fault_address: int | None = None
    fault_offset: int | None = None  # fault_address - module base
    cannot_tell: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    kind = "kernel"

    @property
    def is_small(self) -> bool:
        return self.dump_type == SMALL_DUMP

    @property
    def summary(self) -> str:
        text = f"bug check {self.bugcheck.label} ({self.dump_type_name} dump)"
        if self.faulting_module:
            text += f", faulting module {self.faulting_module}"
        return text

    def timeline_entries(self) -> list[Entry]:
        if self.system_time is None:
            return []
        return [Entry(self.system_time, CRASH, f"dump {Path(self.path).name}", self.summary,
                      self.faulting_module or self.bugcheck.name)]

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "path": self.path,
            "bits": self.bits,
            "build": self.build,
            "free_build": self.free_build,
            "machine": self.machine,
            "processors": self.processors,
            "bugcheck": self.bugcheck.to_dict(),
            "parameters": [f"{p:#x}" for p in self.parameters],
            "dump_type": self.dump_type,
            "dump_type_name": self.dump_type_name,
            "time": iso(self.system_time),
            "uptime_seconds": self.uptime_seconds,
            "required_dump_space": self.required_dump_space,
            "file_size": self.file_size,
            "comment": self.comment,
            "modules": None if self.modules is None else [m.to_dict() for m in self.modules],
            "faulting_module": self.faulting_module,
            "fault_address": None if self.fault_address is None else f"{self.fault_address:#x}",
            "fault_offset": None if self.fault_offset is None else f"{self.fault_offset:#x}",
            "summary": self.summary,
            "cannot_tell": list(self.cannot_tell),
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass
class UserModeDump:
    """A user-mode dump: a process crashed, not the kernel. Named so it is not mistaken for one."""

    path: str
    format: str  # "minidump" (MDMP) or "userdump" (the older USERDUMP format)
    streams: int | None
    stream_types: list[str]
    time: datetime | None
    flags: int | None
    file_size: int
    findings: list[Finding] = field(default_factory=list)

    kind = "user-mode"

    @property
    def summary(self) -> str:
        return f"user-mode {self.format} ({self.streams} streams): a process crashed, not the kernel"

    def timeline_entries(self) -> list[Entry]:
        return []  # a process crash is not a system crash

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "path": self.path,
            "format": self.format,
            "streams": self.streams,
            "stream_types": list(self.stream_types),
            "time": iso(self.time),
            "flags": None if self.flags is None else f"{self.flags:#x}",
            "file_size": self.file_size,
            "summary": self.summary,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass
class DumpSet:
    """Several dumps read at once; damaged ones become findings instead of stopping the rest."""

    dumps: list[KernelDump | UserModeDump] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def kernel_dumps(self) -> list[KernelDump]:
        return [d for d in self.dumps if isinstance(d, KernelDump)]

    def timeline_entries(self) -> list[Entry]:
        return [e for d in self.dumps for e in d.timeline_entries()]

    def to_dict(self) -> dict:
        return {"dumps": [d.to_dict() for d in self.dumps], "findings": [f.to_dict() for f in self.findings]}


# --------------------------------------------------------------------------------------------
# Reading


def read_dump(source: str | os.PathLike | BinaryIO, name: str | None = None) -> KernelDump | UserModeDump:
    """Read one dump from a path or a seekable binary file object.

    Raises DumpError (CorruptInput) for anything that is not a readable dump header, NotFound or
    PermissionDenied for a path that cannot be opened."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        with input_file(path, "dump file") as f:
            return _read(f, name or path)
    return _read(source, name or getattr(source, "name", "<stream>"))


def read_dumps(sources: Iterable[str | os.PathLike]) -> DumpSet:
    """Read every dump; a damaged or unreadable one becomes a warning finding."""
    result = DumpSet()
    for source in sources:
        try:
            result.dumps.append(read_dump(source))
        except (DumpError, NotFound, PermissionDenied) as exc:
            result.findings.append(Finding(WARNING, "dump-unreadable", str(exc), os.fspath(source), exc.offset))
    return result


def _read(f: BinaryIO, name: str) -> KernelDump | UserModeDump:
    reader = _Reader(f, name)
    if reader.size == 0:
        raise DumpError("empty file (0 bytes): Windows did not finish writing this dump", path=name)
    head = reader.read(0, min(8, reader.size), "signature")
    if head == SIG_DUMP32:
        return _kernel_dump(reader, 32)
    if head == SIG_DUMP64:
        return _kernel_dump(reader, 64)
    if head[:4] == SIG_MINIDUMP:
        return _minidump(reader)
    if head in SIG_USERDUMP:
        return UserModeDump(name, "userdump", None, [], None, None, reader.size)
    if head.strip(b"\0") == b"":
        raise DumpError("no dump signature, the file starts with zeros: the dump was never written",
                        path=name, offset=0, field="Signature", expected="PAGEDUMP, PAGEDU64 or MDMP", found=head)
    raise DumpError("not a crash dump", path=name, offset=0, field="Signature",
                    expected="PAGEDUMP, PAGEDU64 or MDMP", found=head)


def _filled(value: int) -> bool:
    """True for header fields that still hold the "PAGE" filler (never written)."""
    return value in (PAGE_FILLER, (PAGE_FILLER << 32) | PAGE_FILLER)


def _text(raw: bytes) -> str | None:
    text = raw.split(b"\0", 1)[0]
    if not text or text.startswith(b"PAGEPAGE"):
        return None
    decoded = text.decode("ascii", "replace")
    return decoded if decoded.isprintable() else None


def _kernel_dump(reader: _Reader, bits: int) -> KernelDump:
    layout = DUMP_HEADER64 if bits == 64 else DUMP_HEADER32
    h = reader.struct(layout, 0)
    params = (h["BugCheckParameter1"], h["BugCheckParameter2"], h["BugCheckParameter3"], h["BugCheckParameter4"])
    dump_type = None if _filled(h["DumpType"]) else h["DumpType"]
    type_name = DUMP_TYPES.get(dump_type, "unknown") if dump_type is not None else "unknown"
    major = h["MajorVersion"]
    space = None if _filled(h["RequiredDumpSpace"]) or h["RequiredDumpSpace"] <= 0 else h["RequiredDumpSpace"]
    uptime = None if _filled(h["SystemUpTime"]) or h["SystemUpTime"] <= 0 else h["SystemUpTime"] / 1e7
    dump = KernelDump(
        path=reader.name,
        bits=bits,
        build=h["MinorVersion"],
        free_build={0xF: True, 0xC: False}.get(major),
        machine=MACHINES.get(h["MachineImageType"], f"{h['MachineImageType']:#x}"),
        processors=h["NumberProcessors"],
        bugcheck=bugchecks.lookup(h["BugCheckCode"]),
        parameters=params,
        dump_type=dump_type,
        dump_type_name=type_name,
        system_time=filetime_to_datetime(h["SystemTime"]),
        uptime_seconds=uptime,
        required_dump_space=space,
        file_size=reader.size,
        comment=_text(h["Comment"]),
    )
    if dump.system_time is None:
        dump.cannot_tell.append("the header holds no crash time (SystemTime is unset)")
    if dump_type is None or type_name == "unknown":
        dump.cannot_tell.append(f"the dump type field ({h['DumpType']:#x}) is not a documented value")
    if space is not None and reader.size < space:
        dump.findings.append(Finding(
            WARNING, "dump-truncated",
            f"the dump is {reader.size} bytes but its header asks for {space}: "
            "Windows did not finish writing it (or the copy is incomplete)", reader.name))
    if dump.is_small:
        _read_triage(reader, dump, layout.size)
    else:
        _check_summary(reader, dump, layout.size)
        dump.cannot_tell.append(
            "the loaded-module list and the faulting module of a full or kernel dump live in the captured "
            "memory, not in the header: open it in WinDbg (!analyze -v) for them")
    dump.cannot_tell.append("no call stack: stack analysis needs the dump's memory and symbols")
    return dump


def _check_summary(reader: _Reader, dump: KernelDump, header_size: int) -> None:
    """Kernel and bitmap dumps carry a second header right after DUMP_HEADER: check its signature."""
    if dump.dump_type not in (2, 5, 6):
        return
    try:
        s = reader.struct(SUMMARY_DUMP, header_size)
    except DumpTruncated as exc:
        dump.findings.append(Finding(WARNING, "dump-truncated", str(exc), reader.name, header_size))
        return
    if s["Signature"] not in (b"SDMP", b"FDMP") or s["ValidDump"] != b"DUMP":
        dump.findings.append(Finding(
            WARNING, "dump-bad-bitmap-header",
            f"the {dump.dump_type_name} dump has no SDMP/FDMP header after its main header "
            f"(found {s['Signature'] + s['ValidDump']!r}): its memory pages cannot be trusted",
            reader.name, header_size))


def _read_triage(reader: _Reader, dump: KernelDump, header_size: int) -> None:
    """Small dumps: TRIAGE_DUMP right after the header, then the driver list and its names."""
    layout = TRIAGE_DUMP64 if dump.bits == 64 else TRIAGE_DUMP32
    entry_layout = DUMP_DRIVER_ENTRY64 if dump.bits == 64 else DUMP_DRIVER_ENTRY32
    try:
        t = reader.struct(layout, header_size)
    except DumpTruncated as exc:
        dump.findings.append(Finding(WARNING, "dump-truncated", str(exc), reader.name, header_size))
        dump.cannot_tell.append("the small dump ends inside its triage header: no module list")
        return
    if reader.size < t["SizeOfDump"]:
        dump.findings.append(Finding(
            WARNING, "dump-truncated",
            f"the small dump is {reader.size} bytes but its triage header says {t['SizeOfDump']}",
            reader.name))
    valid = t["ValidOffset"]
    if 0 < valid <= reader.size - 4 and reader.read(valid, 4, "TRIAGE_DUMP.ValidOffset marker") != TRIAGE_VALID:
        dump.cannot_tell.append(
            "the triage header's ValidOffset does not point at the TRGD marker: the layout is not the "
            "documented one, so the module list is not read")
        return
    count, list_at = t["DriverCount"], t["DriverListOffset"]
    if count == 0 or list_at == 0:
        dump.cannot_tell.append("this small dump holds no driver list")
        return
    if count > MAX_DRIVERS:
        dump.findings.append(Finding(
            WARNING, "dump-bad-driver-list", f"the driver count {count} is implausible; the list is not read",
            reader.name, header_size + 0x34))
        return
    fits = max(0, min(count, (reader.size - list_at) // entry_layout.size))
    if fits < count:
        dump.findings.append(Finding(
            WARNING, "dump-truncated",
            f"the driver list holds {count} entries but only {fits} fit in the file", reader.name, list_at))
    raw = reader.read(list_at, fits * entry_layout.size, "driver list") if fits else b""
    modules = []
    for i in range(fits):
        e = entry_layout.unpack(raw[i * entry_layout.size:(i + 1) * entry_layout.size])
        modules.append(LoadedModule(
            name=_driver_name(reader, e["DriverNameOffset"], i, dump),
            base=e["DllBase"], size=e["SizeOfImage"], checksum=e["CheckSum"], timestamp=e["TimeDateStamp"],
        ))
    dump.modules = modules
    _faulting_module(dump)


def _driver_name(reader: _Reader, offset: int, index: int, dump: KernelDump) -> str:
    """A DUMP_STRING: a ULONG length then UTF-16 text and a NUL. The kernel writes the length in
    characters (the header comment says bytes); we take characters and fall back to bytes when only
    that reading ends on the promised NUL."""
    fallback = f"<driver #{index}>"
    try:
        length = struct.unpack("<I", reader.read(offset, 4, f"driver #{index} name length"))[0]
        if length == 0 or length > MAX_NAME_CHARS:
            raise DumpError("implausible driver name length", path=reader.name, offset=offset,
                            field="DUMP_STRING.Length", expected=f"1..{MAX_NAME_CHARS}", found=length)
        avail = min(2 * length + 2, reader.size - offset - 4)
        text = reader.read(offset + 4, avail, f"driver #{index} name")
    except DumpError as exc:
        dump.findings.append(Finding(WARNING, "dump-bad-driver-name", str(exc), reader.name, offset))
        return fallback
    if text[2 * length:2 * length + 2] == b"\0\0":
        chars = text[:2 * length]
    elif length % 2 == 0 and text[length:length + 2] == b"\0\0":
        chars = text[:length]
    else:
        chars = text[:2 * length]
    name = chars.decode("utf-16-le", "replace").rstrip("\0")
    return name.rsplit("\\", 1)[-1] or fallback


def _faulting_module(dump: KernelDump) -> None:
    index = dump.bugcheck.fault_parameter
    if index is None:
        dump.cannot_tell.append(
            f"bug check {dump.bugcheck.label} carries no faulting address in its parameters: the module "
            "list alone does not say which driver failed")
        return
    address = dump.parameters[index]
    if address == 0:
        dump.cannot_tell.append(f"parameter {index + 1} is zero: the faulting instruction was not recorded")
        return
    dump.fault_address = address
    for module in dump.modules or ():
        if module.contains(address):
            dump.faulting_module = module.name
            dump.fault_offset = address - module.base
            return
    dump.cannot_tell.append(
        f"the faulting address {address:#x} (parameter {index + 1}) is in no loaded module: "
        "an unloaded driver, pool memory or user space")


def _minidump(reader: _Reader) -> UserModeDump:
    try:
        h = reader.struct(MINIDUMP_HEADER, 0)
    except DumpTruncated as exc:
        raise DumpError("user-mode minidump header is truncated", path=reader.name, offset=0,
                        field="MINIDUMP_HEADER", expected=f"{MINIDUMP_HEADER.size} bytes", found=f"{reader.size} bytes") from exc
    streams = h["NumberOfStreams"]
    stamp = h["TimeDateStamp"]
    dump = UserModeDump(
        path=reader.name, format="minidump", streams=streams, stream_types=[],
        time=datetime.fromtimestamp(stamp, tz=timezone.utc) if stamp else None,
        flags=h["Flags"], file_size=reader.size,
    )
    if streams > MAX_STREAMS:
        dump.findings.append(Finding(WARNING, "minidump-bad-directory",
                                     f"the stream count {streams} is implausible; the directory is not read",
                                     reader.name, 8))
        return dump
    try:
        raw = reader.read(h["StreamDirectoryRva"], streams * MINIDUMP_DIRECTORY.size, "minidump stream directory")
    except DumpTruncated as exc:
        dump.findings.append(Finding(WARNING, "dump-truncated", str(exc), reader.name, h["StreamDirectoryRva"]))
        return dump
    for i in range(streams):
        entry = MINIDUMP_DIRECTORY.unpack(raw[i * MINIDUMP_DIRECTORY.size:(i + 1) * MINIDUMP_DIRECTORY.size])
        kind = entry["StreamType"]
        if kind:  # UnusedStream (0) entries are padding
            dump.stream_types.append(MINIDUMP_STREAMS.get(kind, f"{kind:#x}"))
    return dump
