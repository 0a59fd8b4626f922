"""The resumable state file of a cloud rescue: JSON, mode 0600, atomic write + fsync, no secrets.

One file per rescue. It records the parameters, the facts read before anything changed (the
original root device, disk, zone, power state ...), and every step of every workflow with its
status: ``started`` is written (and fsynced) before the step's API call, ``done`` with the step's
result after it. A crash leaves at worst one step ``started``; every step is idempotent (it looks
at the real cloud state first), so ``rescue --resume`` or ``abort`` simply runs it again.

Secrets never go in: keys that look like credentials are refused before anything is written, and
values are only IDs, names, paths and timestamps.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from offline_fix.atomic import write_atomic as _write_atomic
from offline_fix.errors import CorruptInput, NotFound, Refused

FORMAT = "offline-fix-cloud-state"
VERSION = 1
MAX_STATE_BYTES = 4 * 1024 * 1024  # a state file is a few KiB; anything huge is not ours

# Key names that would hold a credential. "KmsKeyId" and "key_id" are identifiers, not secrets.
_SECRET_KEY = re.compile(r"(password|passwd|secret|token|credential|sas_?ur[il]|sig$|access_?key|private_?key)", re.I)
# Values that look like a credential whatever their key: AWS access key ids, SAS signatures.
_SECRET_VALUE = re.compile(r"(\bAKIA[0-9A-Z]{16}\b|\bASIA[0-9A-Z]{16}\b|[?&]sig=)")

PHASES = ("new", "rescuing", "rescued", "restoring", "restored", "aborting", "aborted")


class StateError(CorruptInput):
    """The state file is not a readable offline-fix cloud state."""


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_id() -> str:
    """A short, sortable id for one rescue, used in resource names and tags."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d%H%M%S")


def check_no_secrets(obj: Any, where: str = "state") -> None:
    """Refuse a document holding something that looks like a credential."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if _SECRET_KEY.search(str(key)):
                raise Refused("refusing to store a secret in the state file", field=f"{where}.{key}")
            check_no_secrets(value, f"{where}.{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            check_no_secrets(value, f"{where}[{i}]")
    elif isinstance(obj, str) and _SECRET_VALUE.search(obj):
        raise Refused("refusing to store a secret in the state file", field=where)


class State:
    """A state document bound to a path. ``save()`` writes it atomically; ``path=None`` keeps it in
    memory only (``--dry-run`` never writes)."""

    def __init__(self, doc: dict, path: Path | None) -> None:
        self.doc = doc
        self.path = path

    # -- creation and loading ------------------------------------------------------------------
    @classmethod
    def new(cls, provider: str, params: dict, path: Path | None) -> "State":
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "provider": provider,
            "run_id": run_id(),
            "created": now(),
            "updated": now(),
            "phase": "new",
            "params": dict(params),
            "facts": {},
            "steps": [],
            "notes": [],
            "artifacts": {},
        }
        return cls(doc, path)

    @classmethod
    def load(cls, path: Path) -> "State":
        path = Path(path)
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            raise NotFound("no such state file", path=str(path)) from None
        except IsADirectoryError:
            raise StateError("state file is a directory", path=str(path)) from None
        if len(raw) > MAX_STATE_BYTES:
            raise StateError("state file too large", path=str(path), expected=f"<= {MAX_STATE_BYTES} bytes")
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StateError(f"state file is not JSON: {exc}", path=str(path)) from None
        validate(doc, str(path))
        return cls(doc, path)

    # -- accessors -------------------------------------------------------------------------------
    @property
    def provider(self) -> str:
        return self.doc["provider"]

    @property
    def phase(self) -> str:
        return self.doc["phase"]

    @property
    def facts(self) -> dict:
        return self.doc["facts"]

    @property
    def params(self) -> dict:
        return self.doc["params"]

    @property
    def run_id(self) -> str:
        return self.doc["run_id"]

    def step(self, name: str) -> dict | None:
        for rec in self.doc["steps"]:
            if rec["name"] == name:
                return rec
        return None

    def is_done(self, name: str) -> bool:
        rec = self.step(name)
        return rec is not None and rec["status"] == "done"

    # -- changes (each one saved at once) -----------------------------------------------------------
    def set_phase(self, phase: str) -> None:
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}")
        self.doc["phase"] = phase
        self.save()

    def set_facts(self, facts: dict) -> None:
        self.doc["facts"].update(facts)
        self.save()

    def add_note(self, note: str) -> None:
        if note not in self.doc["notes"]:
            self.doc["notes"].append(note)
            self.save()

    def add_artifact(self, name: str, value: Any) -> None:
        self.doc["artifacts"][name] = value
        self.save()

    def mark_started(self, name: str) -> None:
        rec = self.step(name)
        if rec is None:
            rec = {"name": name}
            self.doc["steps"].append(rec)
        rec.update(status="started", started=now(), attempts=rec.get("attempts", 0) + 1)
        rec.pop("finished", None)
        self.save()

    def mark_done(self, name: str, result: Any) -> None:
        rec = self.step(name)
        if rec is None:
            raise ValueError(f"step {name!r} finished without being started")
        rec.update(status="done", finished=now(), result=result)
        self.save()

    def save(self) -> None:
        self.doc["updated"] = now()
        check_no_secrets(self.doc)
        if self.path is not None:
            write_atomic(self.path, json.dumps(self.doc, indent=2, sort_keys=False) + "\n")


def validate(doc: Any, where: str) -> None:
    """Check the shape of a loaded state document; a typed error names the first problem."""
    if not isinstance(doc, dict):
        raise StateError("state file does not hold a JSON object", path=where)
    if doc.get("format") != FORMAT:
        raise StateError("not an offline-fix cloud state file", path=where, field="format",
                         expected=FORMAT, found=doc.get("format"))
    if doc.get("version") != VERSION:
        raise StateError("unsupported state file version", path=where, field="version",
                         expected=VERSION, found=doc.get("version"))
    shapes = {"provider": str, "run_id": str, "phase": str, "params": dict, "facts": dict,
              "steps": list, "notes": list, "artifacts": dict}
    for key, kind in shapes.items():
        if not isinstance(doc.get(key), kind):
            raise StateError("state file field missing or of the wrong type", path=where, field=key,
                             expected=kind.__name__, found=type(doc.get(key)).__name__)
    if doc["phase"] not in PHASES:
        raise StateError("unknown phase", path=where, field="phase", expected=PHASES, found=doc["phase"])
    for i, rec in enumerate(doc["steps"]):
        if not (isinstance(rec, dict) and isinstance(rec.get("name"), str)
                and rec.get("status") in ("started", "done")):
            raise StateError("malformed step record", path=where, field=f"steps[{i}]")


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write ``text`` (or bytes) to ``path`` with mode 0600, atomically (offline_fix.atomic)."""
    try:
        _write_atomic(path, text, mode=0o600)
    except NotFound:
        raise NotFound("folder of the state file does not exist", path=str(Path(path).parent)) from None


def write_artifact(state_path: Path | None, suffix: str, data: bytes) -> str | None:
    """Save evidence (console output, a screenshot) next to the state file, mode 0600."""
    if state_path is None:
        return None
    state_path = Path(state_path)
    target = state_path.with_name(f"{state_path.stem}.{suffix}")
    write_atomic(target, data)
    return str(target)


class StateLock:
    """An exclusive lock on ``<state>.lock`` so that two runs never drive one rescue at once."""

    def __init__(self, state_path: Path | None) -> None:
        self.path = None if state_path is None else Path(f"{state_path}.lock")
        self._fd: int | None = None

    def __enter__(self) -> "StateLock":
        if self.path is None:
            return self
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if sys.platform == "win32":
                import msvcrt

                msvcrt.locking(self._fd, msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            self._fd = None
            raise Refused("another offline-fix run holds this state file", path=str(self.path)) from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock; the empty lock file may stay
            self._fd = None
