"""The timeline model: merging dumps, events and registry times, in order, as JSON."""

from __future__ import annotations

import io
import json
import struct
from datetime import datetime, timedelta, timezone

import pytest

from offline_fix.evidence import timeline as tl
from offline_fix.evidence.dumps import read_dump
from offline_fix.evidence.eventlogs import read_log
from offline_fix.evidence.timeline import Entry, Finding, Timeline, filetime_to_datetime, registry_entry

UTC = timezone.utc


def _dump(code: int, when: datetime) -> bytes:
    """A minimal DUMP_HEADER64 (ntiodump.h offsets) with a bug check and a SystemTime."""
    h = bytearray(b"PAGE" * 0x800)
    h[0:8] = b"PAGEDU64"
    struct.pack_into("<II", h, 0x08, 0xF, 7601)
    struct.pack_into("<III", h, 0x30, 0x8664, 1, code)
    struct.pack_into("<4Q", h, 0x40, 0, 0, 0, 0)
    struct.pack_into("<I", h, 0xF98, 1)
    struct.pack_into("<q", h, 0xFA8, int((when - datetime(1601, 1, 1, tzinfo=UTC)).total_seconds() * 10_000_000))
    return bytes(h)


def test_filetime_conversion():
    # 2012-04-06T14:07:06Z as a FILETIME: (1333721226 + 11644473600) * 10**7
    assert filetime_to_datetime((1333721226 + 11644473600) * 10**7) == datetime(2012, 4, 6, 14, 7, 6, tzinfo=UTC)
    assert filetime_to_datetime(0) is None
    assert filetime_to_datetime(0x4547415045474150) is None  # "PAGEPAGE" filler


def test_entry_rules():
    with pytest.raises(ValueError):
        Entry(datetime(2020, 1, 1), tl.CRASH, "x", "naive time")
    with pytest.raises(ValueError):
        Entry(datetime(2020, 1, 1, tzinfo=UTC), "explosion", "x", "unknown kind")


@pytest.mark.realdata
def test_merge_dump_events_and_registry(realdata):
    log = read_log(realdata("python-evtx/system.evtx"))
    dump = read_dump(io.BytesIO(_dump(0x7E, datetime(2012, 4, 6, 19, 11, 0, tzinfo=UTC))), name="Minidump/040612-01.dmp")
    changed = registry_entry(datetime(2012, 4, 5, 16, 0, tzinfo=UTC), r"HKLM\SYSTEM\ControlSet001\Services\BCSWAP", "BCSWAP")
    t = Timeline.from_evidence([dump], log.events, [changed])
    times = [e.time for e in t]
    assert times == sorted(times)
    assert len(t) == len(log.events) + 2
    doc = json.loads(json.dumps(t.to_dict()))
    assert doc["counts"]["crash"] == 3  # 1001 + one 41 with a bug check + the dump
    assert doc["start"] == "2012-03-15T07:01:12.357051Z"
    # the first crash on record: Kernel-Power 41 at 14:07:06 (event time written by Windows)
    first = t.first(tl.CRASH)
    assert first.time == datetime(2012, 4, 6, 14, 7, 6, 625000, tzinfo=UTC) and "Kernel-Power 41" in first.summary
    # what changed in the day before it: the registry key, then SCM 7045 installs of PsExec (x3),
    # FResponse Service and its Mnemosyne kernel driver on 2012-04-05 (times as logged by Windows)
    window = t.before(first.time, timedelta(days=1))
    changes = [e.subject for e in window if e.kind == tl.DRIVER_CHANGE]
    assert changes == ["BCSWAP", "PsExec", "PsExec", "PsExec", "FResponse Service", "Mnemosyne"]
    assert t.of_kind(tl.CRASH)[-1].source == "dump 040612-01.dmp"


def test_add_keeps_order_and_findings_serialise():
    t = Timeline()
    late = Entry(datetime(2024, 1, 2, tzinfo=UTC), tl.BOOT, "a", "boot")
    early = Entry(datetime(2024, 1, 1, tzinfo=UTC), tl.UPDATE, "b", "KB1", "KB5000001")
    t.add(late)
    t.add(early)
    assert list(t) == [early, late]
    assert t.between(early.time, early.time) == [early]
    assert Timeline().to_dict() == {"start": None, "end": None, "counts": {k: 0 for k in tl.KINDS}, "entries": []}
    f = Finding(tl.WARNING, "evtx-bad-chunk", "chunk 6 lost", "System.evtx")
    assert f.to_dict() == {"severity": "warning", "code": "evtx-bad-chunk", "message": "chunk 6 lost", "source": "System.evtx"}
