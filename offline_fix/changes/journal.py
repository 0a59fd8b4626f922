"""The append-only journal of a target: one JSON object per line, fsynced before the target is
touched. A change is one "planned" line (with every host byte range, old and new bytes, and the
files' sha256 before and after), followed by status lines: applying, applied, verified,
rolled-back, undoing, undone, interrupted-resolved. The newest status line of a change is its state.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from datetime import datetime, timezone

from offline_fix.atomic import fsync_dir
from offline_fix.errors import CorruptInput

PLANNED, APPLYING, APPLIED, VERIFIED = "planned", "applying", "applied", "verified"
ROLLED_BACK, UNDOING, UNDONE, ABANDONED = "rolled-back", "undoing", "undone", "abandoned"
FINAL_STATES = (VERIFIED, ROLLED_BACK, UNDONE, ABANDONED)


class JournalError(CorruptInput):
    pass


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_change_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


class Journal:
    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, "journal.jsonl")

    def append(self, record: dict) -> None:
        record = {"time": now_iso(), **record}
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(os.path.dirname(self.path))

    def status(self, change_id: str, status: str, **extra) -> None:
        self.append({"id": change_id, "event": status, **extra})

    def records(self) -> list[dict]:
        if not os.path.exists(self.path):
            return []
        out = []
        with open(self.path, encoding="ascii", errors="replace") as fh:
            for number, line in enumerate(fh, 1):
                if not line.endswith("\n"):
                    break  # a line cut by a kill: the write it announced never started
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    raise JournalError(f"journal line {number} is not JSON", path=self.path) from None
        return out

    def changes(self) -> list[dict]:
        """Every change in order, its planned record merged with its newest status."""
        by_id: dict[str, dict] = {}
        order = []
        for rec in self.records():
            cid = rec.get("id")
            if rec.get("event") == PLANNED:
                by_id[cid] = dict(rec, status=PLANNED, history=[(rec["time"], PLANNED)])
                order.append(cid)
            elif cid in by_id:
                entry = by_id[cid]
                entry["status"] = rec["event"]
                entry["history"].append((rec["time"], rec["event"]))
                for key, value in rec.items():
                    if key not in ("id", "event", "time"):
                        entry.setdefault("notes", {})[key] = value
        return [by_id[c] for c in order]

    def get(self, change_id: str) -> dict | None:
        for change in self.changes():
            if change["id"] == change_id:
                return change
        return None
