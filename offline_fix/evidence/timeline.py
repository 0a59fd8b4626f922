"""The evidence model: findings about tolerated damage, and a timeline of what happened when.

A ``Timeline`` merges entries from crash dumps, event logs and (later) registry key last-write
times into one list sorted by time. Every entry says what kind of thing happened (a crash, a
boot, a driver that failed to load ...), where we read it, a one-line summary and the subject it is
about (a driver, service, file or update), so that the ranking can line suspects up against crashes.

``Finding`` is how this layer reports damage it tolerated (a bad EVTX chunk, a truncated dump): a
value in the result, shown in the report and in ``--json``, never a log line.

Nothing here parses anything; dumps.py and eventlogs.py build entries through their own
``timeline_entries()`` methods, so this module imports no other part of the evidence layer.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterable, Iterator

# Kinds of timeline entries. Plain strings so that JSON stays readable.
CRASH = "crash"  # a bugcheck: a dump, event 1001, event 41 with a bugcheck code
BOOT = "boot"  # the system started (EventLog 6005)
SHUTDOWN = "shutdown"  # clean (6006, 1074) or unexpected (6008, 41 without a bugcheck)
DRIVER_CHANGE = "driver-change"  # a service or driver installed or its key changed
DRIVER_FAILURE = "driver-failure"  # a driver or service failed to load or start (7000, 7026, 219 ...)
UPDATE = "update"  # an update or package installed, or failed to
CI_FAILURE = "ci-failure"  # Code Integrity refused or could not verify a file or catalog

KINDS = (CRASH, BOOT, SHUTDOWN, DRIVER_CHANGE, DRIVER_FAILURE, UPDATE, CI_FAILURE)

# Severities of findings.
INFO = "info"
WARNING = "warning"

_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=timezone.utc)
# FILETIME values past this are not plausible times (year 2200); a field full of 0xFF or of the
# "PAGE" filler decodes to one of those.
_FILETIME_MAX = int((datetime(2200, 1, 1, tzinfo=timezone.utc) - _FILETIME_EPOCH).total_seconds()) * 10_000_000


def filetime_to_datetime(value: int) -> datetime | None:
    """A Windows FILETIME (100 ns ticks since 1601-01-01 UTC) as an aware UTC datetime.

    Returns None for 0 and for values past the year 2200 (unset or filler fields), so that callers
    say "no time" instead of inventing one."""
    if value <= 0 or value >= _FILETIME_MAX:
        return None
    return _FILETIME_EPOCH + timedelta(microseconds=value // 10)


def iso(when: datetime | None) -> str | None:
    """ISO 8601 in UTC with a trailing Z, or None."""
    if when is None:
        return None
    return when.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Finding:
    """Damage or a limit that this layer tolerated, reported rather than logged.

    ``code`` is a short stable identifier (``evtx-bad-chunk``, ``dump-truncated`` ...) that tests and
    the report can key on; ``message`` is one plain sentence."""

    severity: str
    code: str
    message: str
    source: str | None = None
    offset: int | None = None

    def to_dict(self) -> dict:
        d = {"severity": self.severity, "code": self.code, "message": self.message}
        if self.source is not None:
            d["source"] = self.source
        if self.offset is not None:
            d["offset"] = self.offset
        return d


@dataclass(frozen=True)
class Entry:
    """One dated thing that happened on the machine."""

    time: datetime
    kind: str
    source: str
    summary: str
    subject: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown timeline kind {self.kind!r}")
        if self.time.tzinfo is None:
            raise ValueError("timeline times must be timezone-aware (UTC)")

    def to_dict(self) -> dict:
        return {
            "time": iso(self.time),
            "kind": self.kind,
            "source": self.source,
            "summary": self.summary,
            "subject": self.subject,
        }


def registry_entry(when: datetime, key: str, subject: str | None = None, summary: str | None = None) -> Entry:
    """A registry key whose last-write time is ``when`` (a service key changed, say)."""
    return Entry(
        time=when,
        kind=DRIVER_CHANGE,
        source=f"registry {key}",
        summary=summary or f"registry key {key} last written",
        subject=subject,
    )


@dataclass
class Timeline:
    """Entries from every source, kept sorted by time (ties keep insertion order)."""

    entries: list[Entry] = field(default_factory=list)

    def add(self, entry: Entry) -> None:
        self.entries.append(entry)
        self.entries.sort(key=lambda e: e.time)

    def extend(self, entries: Iterable[Entry]) -> None:
        self.entries.extend(entries)
        self.entries.sort(key=lambda e: e.time)

    @classmethod
    def from_evidence(cls, *sources: Iterable) -> "Timeline":
        """Merge anything that has ``timeline_entries()`` (dumps, events) or is an Entry.

        ``Timeline.from_evidence(dumps, log.events, registry_entries)``."""
        timeline = cls()
        collected: list[Entry] = []
        for source in sources:
            for item in source:
                if isinstance(item, Entry):
                    collected.append(item)
                else:
                    collected.extend(item.timeline_entries())
        timeline.extend(collected)
        return timeline

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def of_kind(self, *kinds: str) -> list[Entry]:
        return [e for e in self.entries if e.kind in kinds]

    def first(self, kind: str) -> Entry | None:
        return next((e for e in self.entries if e.kind == kind), None)

    def between(self, start: datetime, end: datetime) -> list[Entry]:
        """Entries with start <= time <= end."""
        return [e for e in self.entries if start <= e.time <= end]

    def before(self, when: datetime, within: timedelta) -> list[Entry]:
        """Entries in the ``within`` window up to and including ``when`` (what changed just before a crash)."""
        return self.between(when - within, when)

    def to_dict(self) -> dict:
        counts = Counter(e.kind for e in self.entries)
        return {
            "start": iso(self.entries[0].time) if self.entries else None,
            "end": iso(self.entries[-1].time) if self.entries else None,
            "counts": {kind: counts.get(kind, 0) for kind in KINDS},
            "entries": [e.to_dict() for e in self.entries],
        }
