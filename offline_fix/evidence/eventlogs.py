"""Windows event logs (.evtx): the events that explain a machine that will not boot.

Records are decoded by the ``evtx`` package (PyEvtxParser, a Rust parser) as JSON. Before a
record's JSON is decoded we look at its event id with a regular expression and drop the ones no
handler wants, so that a 100,000-record System log costs little more than the Rust parse.

Events read (provider, id):
- System: Kernel-Power 41 (restart without clean shutdown, with its bug check code), BugCheck 1001
  (the bug check code and parameters from the text), EventLog 6005/6006/6008 (boot, clean and
  unexpected shutdown), USER32 1074 (who asked for a shutdown), Service Control Manager 7000/7001/
  7026 (services and boot drivers that failed to start) and 7045 (service installed), Kernel-PnP 219
  (a driver failed to load for a device), WindowsUpdateClient 19/20 (update installed / failed).
- Microsoft-Windows-CodeIntegrity/Operational: 3001, 3002, 3004, 3010, 3023, 3033, 3077 (file or
  catalog, process, status) and 3089 (signature details, folded into the event it belongs to).
- Setup: Microsoft-Windows-Servicing (packages such as KB5007040 being installed).

Event field names follow the providers' manifests (as shown by Event Viewer's XML view); the
CodeIntegrity ones are listed in Microsoft's "Code Integrity Event Log Messages" and the manifest.
The EVTX file header (signature "ElfFile\\0", chunk count, flags, CRC32) is checked here against
the published format (libyal's "Windows XML Event Log (EVTX) format" document) so that a non-EVTX file
gets a typed error and a log cut short gets a finding.

A damaged log yields the records that can be read plus ``Finding`` objects that say what was lost.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PureWindowsPath
from typing import BinaryIO, Callable, Iterable

from offline_fix.errors import CorruptInput, NotFound, PermissionDenied, input_file
from offline_fix.evidence import bugchecks
from offline_fix.evidence.timeline import (
    BOOT, CI_FAILURE, CRASH, DRIVER_CHANGE, DRIVER_FAILURE, INFO, SHUTDOWN, UPDATE, WARNING,
    Entry, Finding, iso,
)


class EvtxError(CorruptInput):
    """A file that is not a readable EVTX log (bad signature, truncated file header)."""


# --------------------------------------------------------------------------------------------
# EVTX file header (4096-byte block; the first 128 bytes are used):
#   0x00 Signature "ElfFile\0"      0x08 FirstChunkNumber (Q)   0x10 LastChunkNumber (Q)
#   0x18 NextRecordIdentifier (Q)   0x20 HeaderSize (I) = 128   0x24 MinorVersion (H)
#   0x26 MajorVersion (H) = 3       0x28 HeaderBlockSize (H) = 4096   0x2A NumberOfChunks (H)
#   0x2C unknown[76]                0x78 FileFlags (I): 1 dirty, 2 full
#   0x7C Checksum (I): CRC32 of bytes 0..0x77
EVTX_FILE_HEADER = struct.Struct("<8sQQQIHHHH76xII")
if EVTX_FILE_HEADER.size != 128:
    raise AssertionError("EVTX file header must be 128 bytes")
EVTX_SIGNATURE = b"ElfFile\0"
EVTX_HEADER_BLOCK = 4096
EVTX_CHUNK = 65536
EVTX_FLAG_DIRTY = 1
MIN_RECORD = 24  # the smallest possible record; bounds how many records a file can hold
EVTX_CHUNK_SIGNATURE = b"ElfChnk\0"
# Chunk header (libyal, "Windows XML Event Log (EVTX) format", 3.1): the common string offset
# table (64 x u32 at 0x80) and the template pointer table (32 x u32 at 0x180) head linked lists
# (each string / template definition starts with the chunk offset of the next one, 0 ends it).
EVTX_CHUNK_CHAINS = ((0x80, 64, "string"), (0x180, 32, "template"))
MAX_ERROR_FINDINGS = 10

# The logs diagnose reads, by file name in Windows\System32\winevt\Logs (matched case-insensitively).
LOG_FILES = ("System.evtx", "Microsoft-Windows-CodeIntegrity%4Operational.evtx", "Setup.evtx")

# Win32 errors Service Control Manager writes as "%%N" (winerror.h).
WIN32_ERRORS = {
    2: "ERROR_FILE_NOT_FOUND: the system cannot find the file specified",
    3: "ERROR_PATH_NOT_FOUND: the system cannot find the path specified",
    5: "ERROR_ACCESS_DENIED: access is denied",
    31: "ERROR_GEN_FAILURE: a device attached to the system is not functioning",
    50: "ERROR_NOT_SUPPORTED: the request is not supported",
    87: "ERROR_INVALID_PARAMETER: the parameter is incorrect",
    193: "ERROR_BAD_EXE_FORMAT: not a valid Win32 application (damaged or wrong-architecture image)",
    577: "ERROR_INVALID_IMAGE_HASH: Windows cannot verify the digital signature for this file",
    1053: "ERROR_SERVICE_REQUEST_TIMEOUT: the service did not respond in time",
    1058: "ERROR_SERVICE_DISABLED: the service is disabled",
    1068: "ERROR_SERVICE_DEPENDENCY_FAIL: a dependency service or group failed to start",
    1069: "ERROR_SERVICE_LOGON_FAILED: the service did not start due to a logon failure",
    1275: "ERROR_DRIVER_BLOCKED: this driver has been blocked from loading",
}

# NTSTATUS values these events carry (ntstatus.h).
NTSTATUS = {
    0x00000000: "STATUS_SUCCESS",
    0xC0000001: "STATUS_UNSUCCESSFUL",
    0xC0000005: "STATUS_ACCESS_VIOLATION",
    0xC000000E: "STATUS_NO_SUCH_DEVICE",
    0xC0000022: "STATUS_ACCESS_DENIED",
    0xC0000034: "STATUS_OBJECT_NAME_NOT_FOUND",
    0xC000003A: "STATUS_OBJECT_PATH_NOT_FOUND",
    0xC000007B: "STATUS_INVALID_IMAGE_FORMAT",
    0xC000009A: "STATUS_INSUFFICIENT_RESOURCES",
    0xC00000BB: "STATUS_NOT_SUPPORTED",
    0xC0000135: "STATUS_DLL_NOT_FOUND",
    0xC0000139: "STATUS_ENTRYPOINT_NOT_FOUND",
    0xC0000221: "STATUS_IMAGE_CHECKSUM_MISMATCH",
    0xC0000263: "STATUS_DRIVER_ENTRYPOINT_NOT_FOUND",
    0xC0000365: "STATUS_FAILED_DRIVER_ENTRY",
    0xC000036B: "STATUS_DRIVER_BLOCKED_CRITICAL",
    0xC000036C: "STATUS_DRIVER_BLOCKED",
    0xC0000428: "STATUS_INVALID_IMAGE_HASH",
    0xC0000603: "STATUS_IMAGE_CERT_REVOKED",
}


def status_text(value: int | None) -> str:
    if value is None:
        return "no status"
    name = NTSTATUS.get(value)
    return f"{value:#010x} {name}" if name else f"{value:#010x}"


def win32_text(value: int | None) -> str:
    if value is None:
        return "no error code"
    return f"{WIN32_ERRORS.get(value, 'Win32 error')} ({value})"


# --------------------------------------------------------------------------------------------
# Results


@dataclass
class Event:
    """One event we care about, with the fields the ranking needs."""

    time: datetime
    event_id: int
    provider: str
    channel: str
    record_id: int
    kind: str
    summary: str
    subject: str | None = None  # what the event is about, for display (driver, file, package)
    names: tuple[str, ...] = ()  # driver / service / file names the ranking matches on
    path: str | None = None  # a file path (image path, CodeIntegrity file or catalog)
    status: int | None = None  # NTSTATUS or Win32 error
    bugcheck: int | None = None
    parameters: tuple[int, ...] | None = None
    data: dict = field(default_factory=dict)  # the rest, typed
    source: str = ""

    def timeline_entries(self) -> list[Entry]:
        return [Entry(self.time, self.kind, f"{Path(self.source).name or 'evtx'} record {self.record_id}",
                      self.summary, self.subject)]

    def to_dict(self) -> dict:
        d = {
            "time": iso(self.time),
            "event_id": self.event_id,
            "provider": self.provider,
            "channel": self.channel,
            "record_id": self.record_id,
            "kind": self.kind,
            "summary": self.summary,
            "subject": self.subject,
            "names": list(self.names),
            "path": self.path,
            "status": None if self.status is None else f"{self.status:#x}",
            "bugcheck": None if self.bugcheck is None else bugchecks.lookup(self.bugcheck).to_dict(),
            "parameters": None if self.parameters is None else [f"{p:#x}" for p in self.parameters],
            "data": self.data,
            "source": self.source,
        }
        return d


@dataclass
class LogResult:
    """What one .evtx file gave: its events of interest, and what could not be read."""

    path: str
    channel: str | None = None
    records: int = 0  # records the parser decoded
    errors: int = 0  # records or chunks it could not
    chunks: int | None = None
    dirty: bool | None = None
    events: list[Event] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def of_id(self, event_id: int) -> list[Event]:
        return [e for e in self.events if e.event_id == event_id]

    def timeline_entries(self) -> list[Entry]:
        return [x for e in self.events for x in e.timeline_entries()]

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "channel": self.channel,
            "records": self.records,
            "errors": self.errors,
            "chunks": self.chunks,
            "dirty": self.dirty,
            "events": [e.to_dict() for e in self.events],
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass
class LogSet:
    """Several logs; ``events`` merges them in time order."""

    logs: list[LogResult] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def events(self) -> list[Event]:
        return sorted((e for log in self.logs for e in log.events), key=lambda e: e.time)

    @property
    def all_findings(self) -> list[Finding]:
        return self.findings + [f for log in self.logs for f in log.findings]

    def timeline_entries(self) -> list[Entry]:
        return [x for e in self.events for x in e.timeline_entries()]

    def to_dict(self) -> dict:
        return {"logs": [log.to_dict() for log in self.logs], "findings": [f.to_dict() for f in self.findings]}


# --------------------------------------------------------------------------------------------
# Record decoding helpers


@dataclass
class _Record:
    event_id: int
    provider: str
    channel: str
    record_id: int
    time: datetime
    named: dict  # EventData / UserData fields by name, keys with spaces removed
    values: list[str]  # unnamed EventData <Data> values, in order
    binary: str | None
    activity: str | None


_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?")
_EVENT_ID = re.compile(r'"EventID":(?:\{"#attributes":\{[^{}]*\},"#text":)?(\d+)')
_BUGCHECK_TEXT = re.compile(r"(0x[0-9a-fA-F]{1,8})\s*\(([^)]*)\)")
_HEX = re.compile(r"0x[0-9a-fA-F]+|\d+")
_KB = re.compile(r"KB\d{6,8}", re.IGNORECASE)
_CHANNEL = re.compile(r'"Channel":"([^"]*)"')


def _parse_time(text: str) -> datetime | None:
    m = _TIME.match(text or "")
    if not m:
        return None
    y, mo, d, h, mi, s, frac = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    try:
        return datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro, tzinfo=timezone.utc)
    except ValueError:
        return None


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return _text(value.get("#text"))
    if isinstance(value, list):
        return "\n".join(_text(v) for v in value)
    return str(value)


def _int(value) -> int | None:
    """An integer from 41, "0x0", "0xc0000034", "%%50", "50", or None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value & 0xFFFFFFFFFFFFFFFF
    text = _text(value).strip().lstrip("%")
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        return None


def _key(name: str) -> str:
    return name.replace(" ", "").replace("_", "").lower()


def _decode(record: dict, wanted: Callable[[int], bool]) -> _Record | None:
    """JSON record -> _Record, or None when its event id is not wanted (decided before json.loads)."""
    raw = record["data"]
    m = _EVENT_ID.search(raw)
    if m and not wanted(int(m.group(1))):
        return None
    event = json.loads(raw)["Event"]
    system = event["System"]
    eid = system["EventID"]
    eid = int(eid["#text"]) if isinstance(eid, dict) else int(eid)
    if not wanted(eid):
        return None
    attrs = system.get("Provider", {}).get("#attributes", {})
    named: dict = {}
    values: list[str] = []
    binary = None
    body = event.get("EventData") or {}
    if not isinstance(body, dict):
        values = [_text(body)]
        body = {}
    for name, value in body.items():
        if name == "#attributes":
            continue
        if name == "Binary":
            binary = _text(value)
        elif name == "Data":
            items = value.get("#text") if isinstance(value, dict) else value
            values = [_text(v) for v in items] if isinstance(items, list) else [_text(items)]
        else:
            named[_key(name)] = value
    user = event.get("UserData")
    if isinstance(user, dict):
        for inner in user.values():
            if isinstance(inner, dict):
                named.update({_key(k): v for k, v in inner.items() if k != "#attributes"})
    correlation = system.get("Correlation")
    activity = correlation.get("#attributes", {}).get("ActivityID") if isinstance(correlation, dict) else None
    when = _parse_time(system.get("TimeCreated", {}).get("#attributes", {}).get("SystemTime", ""))
    if when is None:
        when = _parse_time(record.get("timestamp", ""))
    if when is None:
        raise ValueError("record has no readable TimeCreated")
    return _Record(eid, attrs.get("Name", "") or attrs.get("EventSourceName", ""), system.get("Channel") or "",
                   int(system.get("EventRecordID") or record.get("event_record_id") or 0), when,
                   named, values, binary, activity)


def _first(rec: _Record, *names: str):
    for name in names:
        if rec.named.get(name) not in (None, ""):
            return rec.named[name]
    return None


def _param(rec: _Record, index: int) -> str:
    """SCM events: param1.. as named fields, or the same values unnamed."""
    value = rec.named.get(f"param{index}")
    if value is None and len(rec.values) >= index:
        value = rec.values[index - 1]
    return _text(value).strip()


def _basename(path: str) -> str:
    return PureWindowsPath(path).name or path


def _driver_name(object_name: str) -> str:
    """\\Driver\\WudfRd or \\FileSystem\\Ntfs -> WudfRd / Ntfs."""
    return object_name.rstrip("\\").rsplit("\\", 1)[-1]


def _event(rec: _Record, kind: str, summary: str, **kw) -> Event:
    return Event(rec.time, rec.event_id, rec.provider, rec.channel, rec.record_id, kind, summary, **kw)


# --------------------------------------------------------------------------------------------
# Handlers: (provider, event id) -> function(record) -> Event | None


def _kernel_power_41(rec: _Record) -> Event:
    code = _int(rec.named.get("bugcheckcode"))
    params = tuple(_int(rec.named.get(f"bugcheckparameter{i}")) or 0 for i in range(1, 5))
    if code:
        bc = bugchecks.lookup(code)
        return _event(rec, CRASH, f"restart after bug check {bc.label} without a clean shutdown (Kernel-Power 41)",
                      subject=bc.name, bugcheck=code, parameters=params)
    return _event(rec, SHUTDOWN,
                  "the system restarted without a clean shutdown and recorded no bug check "
                  "(power loss, hang or forced reset; Kernel-Power 41)",
                  data={"sleep_in_progress": rec.named.get("sleepinprogress")})


def _bugcheck_1001(rec: _Record) -> Event | None:
    texts = [_text(v) for v in rec.named.values()] + rec.values
    for text in texts:
        m = _BUGCHECK_TEXT.search(text)
        if m:
            break
    else:
        return None
    code = int(m.group(1), 16)
    params = tuple(int(p, 16) if p.lower().startswith("0x") else int(p) for p in _HEX.findall(m.group(2)))
    dump = next((t.strip() for t in texts if t.strip().lower().endswith(".dmp")), None)
    report = _text(rec.named.get("param3")) or None
    bc = bugchecks.lookup(code)
    summary = f"bug check {bc.label} ({', '.join(f'{p:#x}' for p in params)})"
    if dump:
        summary += f", dump {dump}"
    return _event(rec, CRASH, summary, subject=bc.name, bugcheck=code, parameters=params, path=dump,
                  data={"report_id": report})


def _systemtime(hex_binary: str | None, offset: int) -> datetime | None:
    """A SYSTEMTIME (8 x uint16) inside an event's binary data."""
    try:
        raw = bytes.fromhex(hex_binary or "")
    except ValueError:
        return None
    if len(raw) < offset + 16:
        return None
    y, mo, _dow, d, h, mi, s, ms = struct.unpack_from("<8H", raw, offset)
    try:
        return datetime(y, mo, d, h, mi, s, ms * 1000, tzinfo=timezone.utc)
    except ValueError:
        return None


def _eventlog_6008(rec: _Record) -> Event:
    # Binary holds two SYSTEMTIMEs of the lost shutdown: local time, then UTC.
    when = _systemtime(rec.binary, 16)
    shown = iso(when) if when else " ".join(v.replace("\u200e", "") for v in rec.values[:2]).strip() or "an unknown time"
    return _event(rec, SHUTDOWN, f"the previous shutdown at {shown} was unexpected (EventLog 6008)",
                  data={"shutdown_time": iso(when)})


def _eventlog_6005(rec: _Record) -> Event:
    return _event(rec, BOOT, "system start: the event log service started (EventLog 6005)")


def _eventlog_6006(rec: _Record) -> Event:
    return _event(rec, SHUTDOWN, "clean shutdown: the event log service stopped (EventLog 6006)")


def _user32_1074(rec: _Record) -> Event:
    process, reason, kind, user = (_param(rec, i) for i in (1, 3, 5, 7))
    text = f"{kind or 'shutdown'} requested by {process or 'an unknown process'}"
    if user:
        text += f" for {user}"
    if reason:
        text += f": {reason}"
    return _event(rec, SHUTDOWN, text + " (USER32 1074)", data={"process": process, "reason": reason, "type": kind})


def _scm_7000(rec: _Record) -> Event:
    service, error = _param(rec, 1), _int(_param(rec, 2))
    return _event(rec, DRIVER_FAILURE, f"{service} failed to start: {win32_text(error)} (SCM 7000)",
                  subject=service, names=(service,), status=error)


def _scm_7001(rec: _Record) -> Event:
    service, dependency, error = _param(rec, 1), _param(rec, 2), _int(_param(rec, 3))
    return _event(rec, DRIVER_FAILURE,
                  f"{service} did not start because {dependency} failed: {win32_text(error)} (SCM 7001)",
                  subject=service, names=(service, dependency), status=error, data={"depends_on": dependency})


def _scm_7026(rec: _Record) -> Event:
    drivers = tuple(d.strip() for d in _param(rec, 1).splitlines() if d.strip())
    return _event(rec, DRIVER_FAILURE,
                  f"boot-start or system-start drivers failed to load: {', '.join(drivers)} (SCM 7026)",
                  subject=", ".join(drivers), names=drivers)


def _scm_7045(rec: _Record) -> Event:
    name = _text(_first(rec, "servicename")) or _param(rec, 1)
    image = _text(_first(rec, "imagepath")) or _param(rec, 2)
    stype = _text(_first(rec, "servicetype")) or _param(rec, 3)
    start = _text(_first(rec, "starttype")) or _param(rec, 4)
    account = _text(_first(rec, "accountname")) or _param(rec, 5)
    return _event(rec, DRIVER_CHANGE, f"service installed: {name} ({stype}, {start}) {image} (SCM 7045)",
                  subject=name, names=(name,), path=image or None,
                  data={"service_type": stype, "start_type": start, "account": account})


def _pnp_219(rec: _Record) -> Event:
    failure = _text(_first(rec, "failurename"))
    device = _text(_first(rec, "drivername"))
    status = _int(_first(rec, "status"))
    driver = _driver_name(failure) if failure else ""
    return _event(rec, DRIVER_FAILURE,
                  f"driver {failure or '?'} failed to load for device {device or '?'}: {status_text(status)} (Kernel-PnP 219)",
                  subject=driver or device, names=(driver,) if driver else (), status=status,
                  data={"device": device, "driver_object": failure})


_CI_TEXT = {
    3001: "unsigned kernel module {file} was loaded",
    3002: "page hashes of {file} could not be found: its integrity cannot be verified",
    3004: "file hash of {file} could not be found: Windows cannot verify it (catalog missing, or file changed)",
    3010: "catalog {file} could not be loaded: {status}",
    3023: "driver {file} is blocked: it has been revoked",
    3033: "{process} tried to load {file}, which did not meet the signing level requirements: {status}",
    3077: "{file} was blocked by code integrity policy (loaded by {process}): {status}",
}


def _code_integrity(rec: _Record) -> Event:
    file = _text(_first(rec, "filenamebuffer", "filename"))
    process = _text(_first(rec, "processnamebuffer", "processname"))
    status = _int(_first(rec, "status"))
    text = _CI_TEXT[rec.event_id].format(file=file or "?", process=process or "a process", status=status_text(status))
    name = _basename(file) if file else ""
    data = {"process": process or None}
    for key in ("requestedsigninglevel", "validatedsigninglevel", "policyname"):
        if rec.named.get(key) not in (None, ""):
            data[key] = rec.named[key]
    if rec.activity:
        data["activity_id"] = rec.activity
    return _event(rec, CI_FAILURE, f"{text} (CodeIntegrity {rec.event_id})", subject=name or None,
                  names=(name,) if name else (), path=file or None, status=status, data=data)


def _code_integrity_3089(rec: _Record) -> Event:
    signature = {
        "publisher": _text(rec.named.get("publishername")) or None,
        "issuer": _text(rec.named.get("issuername")) or None,
        "validated_signing_level": rec.named.get("validatedsigninglevel"),
        "verification_error": rec.named.get("verificationerror"),
    }
    return _event(rec, CI_FAILURE, f"signature details: publisher {signature['publisher'] or '?'} (CodeIntegrity 3089)",
                  data={"activity_id": rec.activity, "signature": signature})


def _servicing(rec: _Record) -> Event:
    package = _text(_first(rec, "packageidentifier"))
    update = _text(_first(rec, "updatename"))
    state = _text(_first(rec, "intendedpackagestatetextized"))
    client = _text(_first(rec, "client"))
    error = _int(_first(rec, "errorcode"))
    what = package or update or "?"
    if rec.event_id == 1:
        text = f"package {what}: change to {state or 'a new state'} started"
    elif rec.event_id == 2:
        text = f"package {what}: now {state or 'changed'}"
    elif rec.event_id == 4:
        text = f"package {what}: a restart is needed to finish becoming {state or 'changed'}"
    else:
        text = f"update {update or what}: servicing step {rec.event_id}"
    if error:
        text += f", error {error:#x}"
    kb = _KB.search(package or update or "")
    return _event(rec, UPDATE, f"{text} ({client or 'Servicing'}, Setup {rec.event_id})", subject=what,
                  names=(kb.group(0).upper(),) if kb else (), status=error,
                  data={"package": package or None, "update": update or None, "state": state or None, "client": client or None})


def _windows_update(rec: _Record) -> Event:
    title = _text(_first(rec, "updatetitle"))
    error = _int(_first(rec, "errorcode"))
    kb = _KB.search(title)
    if rec.event_id == 19:
        text = f"update installed: {title}"
    else:
        text = f"update failed ({error:#x}): {title}" if error is not None else f"update failed: {title}"
    return _event(rec, UPDATE, f"{text} (WindowsUpdateClient {rec.event_id})", subject=kb.group(0).upper() if kb else title,
                  names=(kb.group(0).upper(),) if kb else (), status=error)


_HANDLERS: dict[tuple[str, int], Callable[[_Record], Event | None]] = {
    ("microsoft-windows-kernel-power", 41): _kernel_power_41,
    ("microsoft-windows-wer-systemerrorreporting", 1001): _bugcheck_1001,
    ("bugcheck", 1001): _bugcheck_1001,
    ("save dump", 1001): _bugcheck_1001,
    ("eventlog", 6005): _eventlog_6005,
    ("eventlog", 6006): _eventlog_6006,
    ("eventlog", 6008): _eventlog_6008,
    ("user32", 1074): _user32_1074,
    ("service control manager", 7000): _scm_7000,
    ("service control manager", 7001): _scm_7001,
    ("service control manager", 7026): _scm_7026,
    ("service control manager", 7045): _scm_7045,
    ("microsoft-windows-kernel-pnp", 219): _pnp_219,
    ("microsoft-windows-windowsupdateclient", 19): _windows_update,
    ("microsoft-windows-windowsupdateclient", 20): _windows_update,
    ("microsoft-windows-codeintegrity", 3089): _code_integrity_3089,
    **{("microsoft-windows-codeintegrity", i): _code_integrity for i in _CI_TEXT},
    **{("microsoft-windows-servicing", i): _servicing for i in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14)},
}
WANTED_IDS = frozenset(eid for _, eid in _HANDLERS)


# --------------------------------------------------------------------------------------------
# Reading


def _check_header(f: BinaryIO, name: str, result: LogResult) -> None:
    """Validate the EVTX file header ourselves: typed error for non-EVTX, findings for damage."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(0)
    head = f.read(EVTX_FILE_HEADER.size)
    if len(head) < 8 or head[:8] != EVTX_SIGNATURE:
        raise EvtxError("not an EVTX event log", path=name, offset=0, field="Signature",
                        expected=EVTX_SIGNATURE, found=head[:8])
    if len(head) < EVTX_FILE_HEADER.size:
        raise EvtxError("EVTX file header is truncated", path=name, offset=0, field="file header",
                        expected=f"{EVTX_FILE_HEADER.size} bytes", found=f"{len(head)} bytes")
    (_sig, _first_chunk, _last_chunk, _next_record, header_size, _minor, major, block, chunks,
     flags, checksum) = EVTX_FILE_HEADER.unpack(head)
    result.chunks = chunks
    result.dirty = bool(flags & EVTX_FLAG_DIRTY)
    if zlib.crc32(head[:0x78]) != checksum:
        result.findings.append(Finding(WARNING, "evtx-bad-header-checksum",
                                       "the log's file header checksum does not match: header values may be stale",
                                       name, 0x7C))
    if (header_size, major, block) != (128, 3, EVTX_HEADER_BLOCK):
        result.findings.append(Finding(WARNING, "evtx-unexpected-header",
                                       f"unexpected EVTX header (size {header_size}, version {major}, block {block})",
                                       name, 0x20))
    needed = EVTX_HEADER_BLOCK + chunks * EVTX_CHUNK
    if size < needed:
        result.findings.append(Finding(
            WARNING, "evtx-truncated",
            f"the log is {size} bytes but its header lists {chunks} chunks ({needed} bytes): "
            "the end of the log is missing", name, size))
    f.seek(0)


def _looping_chunks(f: BinaryIO, size: int) -> dict[int, str]:
    """{file offset: why} of the chunks whose string or template chains loop. The evtx package
    follows these chains without a visited set, holding the GIL: a loop hangs the process for
    good (found by fuzzing), so such chunks are never handed to it."""
    bad = {}
    offset = EVTX_HEADER_BLOCK
    while offset + 0x200 <= size:
        f.seek(offset)
        chunk = f.read(EVTX_CHUNK)
        if chunk[:8] == EVTX_CHUNK_SIGNATURE:
            for table, count, what in EVTX_CHUNK_CHAINS:
                for i in range(count):
                    (link,) = struct.unpack_from("<I", chunk, table + 4 * i)
                    seen = set()
                    while link and link + 4 <= len(chunk):  # every hop is new (seen), so this ends
                        if link in seen:
                            bad[offset] = f"its {what} table entry {i} leads into a loop (at chunk offset {link:#x})"
                            break
                        seen.add(link)
                        (link,) = struct.unpack_from("<I", chunk, link)
                    if offset in bad:
                        break
                if offset in bad:
                    break
        offset += EVTX_CHUNK
    f.seek(0)
    return bad


class _SkipChunks:
    """A read-only view of a log in which the given chunks lose their signature, so that the
    evtx package reports them as unreadable and goes on with the next one."""

    def __init__(self, f: BinaryIO, chunks) -> None:
        self.f = f
        self.hidden = sorted(chunks)

    def read(self, n: int = -1) -> bytes:
        start = self.f.tell()
        data = bytearray(self.f.read(n))
        for chunk in self.hidden:
            lo, hi = max(start, chunk), min(start + len(data), chunk + len(EVTX_CHUNK_SIGNATURE))
            if lo < hi:
                data[lo - start:hi - start] = bytes(hi - lo)
        return bytes(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.f.seek(offset, whence)

    def tell(self) -> int:
        return self.f.tell()


def read_log(source: str | os.PathLike | BinaryIO, name: str | None = None, *, threads: int = 1) -> LogResult:
    """Read one .evtx file (path or seekable binary file object) and extract the events of interest.

    Raises EvtxError (CorruptInput) when the file is not an EVTX log, NotFound / PermissionDenied
    when the path cannot be opened. Damage inside the log becomes findings on the result."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        with input_file(path, "event log") as f:
            return _read(f, name or path, threads)
    return _read(source, name or getattr(source, "name", "<stream>"), threads)


def _read(f: BinaryIO, name: str, threads: int) -> LogResult:
    import evtx  # Rust parser; imported here so that `offline-fix --help` does not load it

    result = LogResult(path=name)
    _check_header(f, name, result)
    f.seek(0, os.SEEK_END)
    size = f.tell()
    max_steps = size // MIN_RECORD + 16  # every step yields a record or an error: bounded
    f.seek(0)
    looping = _looping_chunks(f, size)
    for offset, why in looping.items():
        result.findings.append(Finding(WARNING, "evtx-bad-chunk",
                                       f"chunk at offset {offset:#x} skipped: {why}", name, offset))
    try:
        parser = evtx.PyEvtxParser(_SkipChunks(f, looping) if looping else f, number_of_threads=threads)
    except (RuntimeError, OSError) as exc:
        raise EvtxError(f"the EVTX parser rejected the file: {exc}", path=name) from None
    records = parser.records_json()
    errors: list[str] = []
    first_channel = None
    for _ in range(max_steps):
        try:
            record = next(records)
        except StopIteration:
            break
        except (RuntimeError, OSError, ValueError) as exc:
            result.errors += 1
            errors.append(str(exc))
            continue
        result.records += 1
        if result.records == 1:
            m = _CHANNEL.search(record.get("data", ""))
            first_channel = m.group(1) if m else None
        try:
            event = event_from_record(record, name)
        except EvtxError as exc:
            result.findings.append(Finding(WARNING, "evtx-unexpected-record", f"{exc.message}; skipped", name))
            continue
        if event is not None:
            result.events.append(event)
    else:
        result.findings.append(Finding(WARNING, "evtx-too-many-records",
                                       f"stopped after {max_steps} steps: more records than the file size allows", name))
    channels = Counter(e.channel for e in result.events)
    result.channel = channels.most_common(1)[0][0] if channels else first_channel
    _report_errors(result, errors, name)
    _fold_signatures(result)
    result.events.sort(key=lambda e: (e.time, e.record_id))
    return result


def event_from_record(record: dict, source: str = "") -> Event | None:
    """One record as the evtx package yields it from ``records_json()`` (a dict with ``data``,
    ``event_record_id``, ``timestamp``) -> an Event, or None when no handler wants it.

    Raises EvtxError when the record's JSON does not have the expected shape."""
    try:
        rec = _decode(record, WANTED_IDS.__contains__)
        if rec is None:
            return None
        handler = _HANDLERS.get((rec.provider.lower(), rec.event_id))
        event = handler(rec) if handler else None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise EvtxError(f"record {record.get('event_record_id') if isinstance(record, dict) else '?'} has an "
                        f"unexpected layout ({type(exc).__name__}: {exc})", path=source or None) from None
    if event is not None:
        event.source = source
    return event


def _report_errors(result: LogResult, errors: list[str], name: str) -> None:
    for message in errors[:MAX_ERROR_FINDINGS]:
        code = "evtx-bad-chunk" if "chunk" in message.lower() else "evtx-bad-record"
        result.findings.append(Finding(WARNING, code, f"part of the log could not be read: {message}", name))
    if len(errors) > MAX_ERROR_FINDINGS:
        result.findings.append(Finding(WARNING, "evtx-bad-record",
                                       f"{len(errors) - MAX_ERROR_FINDINGS} more unreadable parts", name))
    if errors:
        result.findings.append(Finding(
            WARNING, "evtx-damaged",
            f"damaged log: {result.records} records read, {len(errors)} chunks or records lost", name))


def _fold_signatures(result: LogResult) -> None:
    """CodeIntegrity 3089 carries the signature details of another event with the same ActivityID."""
    by_activity = {}
    for event in result.events:
        activity = event.data.get("activity_id")
        if event.event_id != 3089 and activity:
            by_activity.setdefault(activity, []).append(event)
    kept = []
    for event in result.events:
        targets = by_activity.get(event.data.get("activity_id")) if event.event_id == 3089 else None
        if targets:
            for target in targets:
                target.data.setdefault("signatures", []).append(event.data["signature"])
        else:
            kept.append(event)
    result.events = kept


def find_logs(logs_dir: str | os.PathLike) -> dict[str, Path | None]:
    """The logs diagnose reads, found case-insensitively in a winevt\\Logs folder."""
    folder = Path(logs_dir)
    try:
        present = {p.name.lower(): p for p in folder.iterdir() if p.is_file()}
    except FileNotFoundError:
        raise NotFound("event log folder not found", path=str(folder)) from None
    except NotADirectoryError:
        raise NotFound("not a folder", path=str(folder)) from None
    except PermissionError:
        raise PermissionDenied("cannot list event log folder", path=str(folder)) from None
    return {wanted: present.get(wanted.lower()) for wanted in LOG_FILES}


def read_logs(sources: Iterable[str | os.PathLike], *, threads: int = 1) -> LogSet:
    """Read several logs; one that is not EVTX or cannot be opened becomes a warning finding."""
    result = LogSet()
    for source in sources:
        try:
            result.logs.append(read_log(source, threads=threads))
        except (EvtxError, NotFound, PermissionDenied) as exc:
            result.findings.append(Finding(WARNING, "evtx-unreadable", str(exc), os.fspath(source), exc.offset))
    return result


def read_logs_dir(logs_dir: str | os.PathLike, *, threads: int = 1) -> LogSet:
    """Read the System, CodeIntegrity/Operational and Setup logs of a winevt\\Logs folder."""
    found = find_logs(logs_dir)
    result = read_logs([p for p in found.values() if p is not None], threads=threads)
    for wanted, path in found.items():
        if path is None:
            result.findings.append(Finding(INFO, "evtx-missing", f"no {wanted} in the event log folder",
                                           str(Path(logs_dir) / wanted)))
    return result
