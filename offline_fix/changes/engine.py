"""The write path every repair command uses.

    session = WriteSession(target, install, backup_dir=..., force=...)   # guards + exclusive lock
    result = session.apply(change)                                       # or dry_run=True

``apply`` does, in this order, each step durable before the next:
1. map every changed byte of every file to host offsets (folder: the file itself; image or
   device: NTFS data runs, partition offset, container block map), and check that the host holds
   exactly the old bytes there (a wrong map is caught before anything is written);
2. copy every file that will change into the backup folder (sha256 recorded);
3. append the journal entry (host ranges with old and new bytes, file hashes) and fsync it;
4. write (stage by stage, see FilePatch.stages) and fsync;
5. re-read every changed file through an independent path (changes/independent.py), check its
   sha256 and the caller's own check; on any mismatch, put the old bytes back at once, confirm,
   and raise VerificationFailed saying so.
``undo`` puts back the old bytes of a change (sha256 checked) and ``resolve_interrupted`` settles
changes a kill left half-done: target as it was, as intended, or rolled back to as it was.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from offline_fix.atomic import fsync_dir
from offline_fix.changes import guards, journal as J
from offline_fix.changes.independent import ImageReader, read_file_in_folder
from offline_fix.changes.state import ensure_state_dir
from offline_fix.errors import OfflineFixError, Refused, VerificationFailed
from offline_fix.target import Target, platform
from offline_fix.target.disk import VhdxDisk
from offline_fix.target.extents import file_layout, host_ranges


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _crash_point(name: str) -> None:
    """Fault injection for the crash-consistency tests: OFFLINE_FIX_CRASH_AT=name kills the process
    (SIGKILL, no cleanup) at that point. Unset in normal use."""
    if os.environ.get("OFFLINE_FIX_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class Range:
    """``new`` replaces ``old`` at ``offset`` of a file."""

    offset: int
    old: bytes
    new: bytes


@dataclass
class FilePatch:
    path: str  # on the volume, as resolved (real casing)
    before: bytes  # the whole file as it is
    after: bytes  # the whole file as it will be
    stages: list[list[Range]]  # written in order; each stage fsynced before the next

    @property
    def grows(self) -> bool:
        return len(self.after) != len(self.before)


@dataclass
class NewFile:
    """A file the change creates (it must not exist yet)."""

    path: str  # on the volume
    content: bytes


@dataclass
class Change:
    kind: str  # "reg-set", "drivers-disable", ...
    summary: str  # one line for people
    details: list[dict]  # what changed, in the caller's words (key, value, old, new ...)
    patches: list[FilePatch]
    check: Callable[[dict[str, bytes]], list[str]] | None = None  # files re-read independently -> problems
    # Files to create. Folder targets: written beside their place and renamed in. Images and
    # devices: the caller also gives ``volume_ranges``, the volume bytes libntfs-3g changed when it
    # created them on an in-memory overlay (offsets relative to the volume): those are journaled
    # and written like any other range, so undo is byte-identical.
    creates: list[NewFile] = field(default_factory=list)
    volume_ranges: list[Range] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.patches or self.creates)


@dataclass
class HostRange:
    host_offset: int
    old: bytes
    new: bytes
    file: str
    file_offset: int
    stage: int

    def to_json(self) -> dict:
        return {"host_offset": self.host_offset, "old": self.old.hex(), "new": self.new.hex(),
                "file": self.file, "file_offset": self.file_offset, "stage": self.stage}

    @classmethod
    def from_json(cls, d: dict) -> "HostRange":
        return cls(d["host_offset"], bytes.fromhex(d["old"]), bytes.fromhex(d["new"]), d["file"],
                   d["file_offset"], d["stage"])


@dataclass
class Result:
    change_id: str | None
    status: str
    summary: str
    details: list[dict]
    files: list[dict] = field(default_factory=list)
    host_ranges: int = 0
    bytes_changed: int = 0
    checks: list[str] = field(default_factory=list)
    state_dir: str | None = None

    def to_dict(self) -> dict:
        return {"change_id": self.change_id, "status": self.status, "summary": self.summary,
                "details": self.details, "files": self.files, "host_ranges": self.host_ranges,
                "bytes_changed": self.bytes_changed, "checks": self.checks, "state_dir": self.state_dir}


class WriteSession:
    """Exclusive write access to one target for one command run."""

    def __init__(self, target: Target, volume, *, backup_dir: str | None = None, force: bool = False,
                 warn: Callable[[str], None] = lambda message: None) -> None:
        self.target = target
        self.volume = volume
        self.force = force
        self.warn = warn
        self.state_dir = ensure_state_dir(target.spec, backup_dir)
        self.journal = J.Journal(self.state_dir)
        self._lock_fh = open(os.path.join(self.state_dir, "lock"), "a+b")
        try:
            platform.lock_exclusive(self._lock_fh)
        except platform.LockBusy:
            self._lock_fh.close()
            raise Refused(f"another offline-fix is writing to {target.spec} (lock {self.state_dir}/lock held)") from None
        self.host_path = None
        self.host_fh = None
        if target.disk is not None:
            self.host_path = target.disk.path
            guards.check_device(self.host_path, target.disk.is_device)
        guards.check_hibernation(volume.fs(), force, warn)

    def close(self) -> None:
        if self.host_fh is not None:
            self.host_fh.close()
            self.host_fh = None
        self._lock_fh.close()

    def __enter__(self) -> "WriteSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- host access -------------------------------------------------------------------------------
    def _host(self):
        if self.host_fh is None:
            try:
                self.host_fh = open(self.host_path, "r+b", buffering=0)
            except PermissionError:
                raise Refused(f"no write permission on {self.host_path}") from None
            except OSError as exc:
                raise Refused(f"{self.host_path} cannot be opened for writing: {exc}") from None
            try:
                platform.lock_exclusive(self.host_fh)
            except platform.LockBusy:
                raise Refused(f"{self.host_path} is locked by another program") from None
        return self.host_fh

    def _pread(self, offset: int, length: int) -> bytes:
        fh = self._host()
        fh.seek(offset)
        data = fh.read(length)
        if len(data) != length:
            raise VerificationFailed(f"short read at host offset {offset}", expected=length, found=len(data))
        return data

    def _pwrite(self, offset: int, data: bytes) -> None:
        fh = self._host()
        fh.seek(offset)
        written = fh.write(data)
        if written != len(data):
            raise VerificationFailed(f"short write at host offset {offset}", expected=len(data), found=written)

    def _sync(self) -> None:
        if self.host_fh is not None:
            os.fsync(self.host_fh.fileno())

    # -- planning ----------------------------------------------------------------------------------
    def _map_image(self, change: Change) -> list[HostRange]:
        disk = self.target.disk
        ranges = []
        for patch in change.patches:
            if patch.grows:
                raise Refused(f"{patch.path} would have to grow from {len(patch.before)} to {len(patch.after)} bytes; "
                              "offline-fix does not grow files inside disk images (use a mounted folder target)")
            layout = file_layout(self.volume, patch.path)
            if layout.size != len(patch.before):
                raise VerificationFailed(f"{patch.path}: size on disk {layout.size} differs from the bytes read {len(patch.before)}")
            for stage_no, stage in enumerate(patch.stages):
                for r in stage:
                    for file_off, disk_off, length in layout.disk_ranges(r.offset, len(r.new)):
                        rel = file_off - r.offset
                        for piece_disk, host_off, piece_len in host_ranges(disk, disk_off, length):
                            a = rel + (piece_disk - disk_off)
                            ranges.append(HostRange(host_off, r.old[a:a + piece_len], r.new[a:a + piece_len],
                                                    patch.path, file_off + (piece_disk - disk_off), stage_no))
        for r in change.volume_ranges:
            if r.offset < 0 or r.offset + len(r.new) > self.volume.size:
                raise Refused(f"a change reaches outside volume {self.volume.index}")
            base = self.volume.offset + r.offset
            for piece_disk, host_off, piece_len in host_ranges(disk, base, len(r.new)):
                a = piece_disk - base
                ranges.append(HostRange(host_off, r.old[a:a + piece_len], r.new[a:a + piece_len],
                                        "(volume)", r.offset + a, 0))
        if isinstance(disk, VhdxDisk):
            ranges[:0] = self._vhdx_header_ranges(disk)
        return ranges

    def _vhdx_header_ranges(self, disk: VhdxDisk) -> list[HostRange]:
        """MS-VHDX 2.2.2.1: before the first write, a new header (sequence + 1, new FileWriteGuid and
        DataWriteGuid, CRC-32C) goes to the slot that is not current."""
        import struct

        from dissect.util.hash.crc32c import crc32c

        from offline_fix.target import vhdx as V

        current = disk.vhdx.header
        other = V.HEADER_OFFSETS[1 - current.index]
        raw = bytearray(current.raw)
        struct.pack_into("<Q", raw, 8, current.sequence + 1)
        raw[16:32] = uuid.uuid4().bytes_le
        raw[32:48] = uuid.uuid4().bytes_le
        raw[4:8] = b"\x00\x00\x00\x00"
        struct.pack_into("<I", raw, 4, crc32c(bytes(raw)))
        old = self._pread(other, V.HEADER_SIZE)
        return [HostRange(other, old, bytes(raw), "(VHDX header)", other, -1)]

    def _plan_host_ranges(self, change: Change) -> list[HostRange]:
        if self.target.disk is not None:
            if change.creates and not change.volume_ranges:
                raise Refused("new files on an image need their volume ranges (made through libntfs-3g)")
            ranges = self._map_image(change)
            for r in ranges:  # the map is proven before anything is written
                if r.stage >= 0 and self._pread(r.host_offset, len(r.old)) != r.old:
                    raise VerificationFailed(
                        f"mapping check failed: host offset {r.host_offset} does not hold the bytes of {r.file} at "
                        f"file offset {r.file_offset}; nothing was written")
            return ranges
        return []

    # -- apply -------------------------------------------------------------------------------------
    def apply(self, change: Change, *, dry_run: bool = False) -> Result:
        result = Result(None, "dry-run" if dry_run else J.PLANNED, change.summary, change.details, state_dir=self.state_dir)
        if change.empty:
            result.status = "nothing-to-do"
            return result
        self.resolve_interrupted()
        listings: dict = {}
        for path in [p.path for p in change.patches] + [n.path for n in change.creates]:
            guards.check_unambiguous(self.volume.fs(), path, listings)
        for new in change.creates:
            if self.volume.fs().exists(new.path):
                raise Refused(f"{new.path} exists already; not overwritten")
        ranges = self._plan_host_ranges(change)
        result.files = [{"path": p.path, "sha256_before": sha256(p.before), "sha256_after": sha256(p.after),
                         "size_before": len(p.before), "size_after": len(p.after),
                         "bytes_changed": sum(len(r.new) for stage in p.stages for r in stage)} for p in change.patches]
        result.files += [{"path": n.path, "sha256_before": None, "sha256_after": sha256(n.content), "size_before": None,
                          "size_after": len(n.content), "bytes_changed": len(n.content)} for n in change.creates]
        result.host_ranges = len(ranges)
        result.bytes_changed = sum(f["bytes_changed"] for f in result.files)
        if dry_run:
            return result
        change_id = J.new_change_id()
        result.change_id = change_id
        backups = self._backup(change_id, change)
        _crash_point("after-backup")
        folder_ops = self._folder_ops(change) if self.target.disk is None else []
        self.journal.append({
            "id": change_id, "event": J.PLANNED, "target": self.target.spec, "kind": change.kind,
            "summary": change.summary, "details": change.details, "host": self.host_path,
            "volume": {"index": self.volume.index, "offset": self.volume.offset},
            "container": self.target.disk.format if self.target.disk is not None else "folder",
            "files": [dict(f, backup=backups[f["path"]]) for f in result.files],
            "ranges": [r.to_json() for r in ranges], "folder_ops": folder_ops,
        })
        _crash_point("after-journal")
        self.journal.status(change_id, J.APPLYING)
        self._write(ranges, folder_ops, change, forward=True)
        self.journal.status(change_id, J.APPLIED)
        _crash_point("before-verify")
        problems = self._verify(change, {f["path"]: f["sha256_after"] for f in result.files})
        if problems:
            self._write(ranges, folder_ops, change, forward=False)
            restored = self._verify(None, {f["path"]: f["sha256_before"] for f in result.files})
            self.journal.status(change_id, J.ROLLED_BACK, problems=problems, restored_ok=not restored)
            result.status = J.ROLLED_BACK
            raise VerificationFailed(
                "the independent re-read disagreed (" + "; ".join(problems[:3]) + "); the original bytes were put back"
                + (" and confirmed" if not restored else f", BUT the restore check failed too: {'; '.join(restored)}"))
        self.journal.status(change_id, J.VERIFIED, checks=result.checks or ["sha256", "independent re-read"])
        result.status = J.VERIFIED
        result.checks = ["sha256 of every changed file re-read independently",
                         *(["content check by an independent parser"] if change.check else [])]
        return result

    def _backup(self, change_id: str, change: Change) -> dict[str, str]:
        folder = os.path.join(self.state_dir, "backups", change_id)
        os.makedirs(folder, mode=0o700)
        out = {}
        for n, patch in enumerate(change.patches):
            name = f"{n:02d}-" + patch.path.replace("\\", "_").replace("/", "_")
            dest = os.path.join(folder, name)
            with open(dest, "wb") as fh:
                fh.write(patch.before)
                fh.flush()
                os.fsync(fh.fileno())
            with open(dest + ".sha256", "w") as fh:
                fh.write(f"{sha256(patch.before)}  {patch.path}\n")
                fh.flush()
                os.fsync(fh.fileno())
            out[patch.path] = os.path.relpath(dest, self.state_dir)
        for new in change.creates:
            out[new.path] = None  # did not exist: undo deletes it
        fsync_dir(folder)
        return out

    def _folder_ops(self, change: Change) -> list[dict]:
        ops = []
        fs = self.volume.fs()
        for patch in change.patches:
            host = fs.host_path(patch.path)
            ops.append({"file": patch.path, "host_path": host, "mode": "replace" if patch.grows else "patch"})
        for new in change.creates:
            folder, _, name = new.path.replace("/", "\\").rpartition("\\")
            host_folder = fs.host_path(folder) if folder else fs.root
            ops.append({"file": new.path, "host_path": os.path.join(host_folder, name), "mode": "create"})
        return ops

    def _write(self, ranges: list[HostRange], folder_ops: list[dict], change: Change | None, *, forward: bool) -> None:
        if self.target.disk is not None:
            order = sorted(ranges, key=lambda r: r.stage) if forward else sorted(ranges, key=lambda r: -r.stage)
            for n, r in enumerate(order):
                self._pwrite(r.host_offset, r.new if forward else r.old)
                if n == len(order) // 2:
                    _crash_point("mid-write")
                if n + 1 < len(order) and order[n + 1].stage != r.stage:
                    self._sync()
            self._sync()
            return
        contents = {n.path: n.content for n in change.creates}
        for op in folder_ops:
            if op["mode"] == "create":
                if forward:
                    _replace_file(op["host_path"], contents[op["file"]], create=True)
                elif os.path.lexists(op["host_path"]):
                    os.unlink(op["host_path"])
                    fsync_dir(os.path.dirname(op["host_path"]))
        for op, patch in zip([o for o in folder_ops if o["mode"] != "create"], change.patches):
            content = patch.after if forward else patch.before
            if op["mode"] == "replace":
                _replace_file(op["host_path"], content)
                continue
            with open(op["host_path"], "r+b", buffering=0) as fh:
                stages = patch.stages if forward else list(reversed(patch.stages))
                for stage in stages:
                    for r in stage:
                        fh.seek(r.offset)
                        fh.write(r.new if forward else r.old)
                        _crash_point("mid-write")
                    os.fsync(fh.fileno())

    def _entry_host_path(self, entry: dict | None, path: str) -> str:
        """Folder targets: where a journal entry wrote ``path`` (a BCD store may live on another
        mounted volume than the session's), else the session volume's file."""
        for op in (entry or {}).get("folder_ops", []):
            if op["file"] == path:
                return op["host_path"]
        return self.volume.fs().host_path(path)

    def _reread(self, paths, entry: dict | None = None) -> dict[str, bytes | None]:
        """Each file's bytes through the independent path (None: it does not exist), the volume
        opened once for all of them. A journal ``entry`` is re-read where it was written (its
        volume or folder), whatever the session's."""
        if self.target.disk is None or (entry is not None and entry.get("container") == "folder"):
            out = {}
            for path in paths:
                host = self._entry_host_path(entry, path)
                out[path] = read_file_in_folder(host) if os.path.lexists(host) else None
            return out
        self._sync()
        offset = entry["volume"]["offset"] if entry is not None and entry.get("volume") else self.volume.offset
        with ImageReader(self.host_path, self.target.disk.format, self.target.disk.size, offset) as reader:
            return {path: reader.read(path) for path in paths}

    def _verify(self, change: Change | None, expected: dict[str, str | None], entry: dict | None = None) -> list[str]:
        """``expected``: path -> sha256, or None for "must not exist"."""
        try:
            contents = self._reread(list(expected), entry)
        except OfflineFixError as exc:
            return [str(exc)]
        problems = []
        files = {}
        for path, digest in expected.items():
            data = contents[path]
            if data is None or digest is None:
                if (data is None) != (digest is None):
                    problems.append(f"{path}: {'missing' if data is None else 'present'} after writing")
                continue
            files[path] = data
            if sha256(data) != digest:
                problems.append(f"{path}: sha256 after writing is {sha256(data)[:16]}..., expected {digest[:16]}...")
        if change is not None and change.check is not None and not problems:
            problems.extend(change.check(files))
        return problems

    # -- interrupted changes and undo --------------------------------------------------------------
    def _host_state(self, entry: dict) -> str:
        """"old", "new" or "mixed": what the target's changed files hold now, by sha256 of an
        independent re-read (the same path the verification uses)."""
        try:
            contents = self._reread([f["path"] for f in entry["files"]], entry)
        except OfflineFixError:
            return "mixed"
        states = set()
        for f in entry["files"]:
            data = contents[f["path"]]
            digest = None if data is None else sha256(data)
            states.add("old" if digest == f["sha256_before"] else "new" if digest == f["sha256_after"] else "mixed")
        return states.pop() if len(states) == 1 else "mixed"

    def _restore_container_metadata(self, entry: dict) -> None:
        """Old bytes back for ranges outside the files (the VHDX header), so that even a change
        abandoned before its data was written leaves the image byte-identical."""
        meta = [HostRange.from_json(r) for r in entry.get("ranges", []) if r["stage"] < 0]
        for r in meta:
            self._pwrite(r.host_offset, r.old)
        if meta:
            self._sync()

    def _restore_entry(self, entry: dict) -> list[str]:
        """Put back the old bytes of a journal entry; return problems of the check (empty: fine)."""
        if entry.get("container") == "folder":
            for f in entry["files"]:
                if f["backup"] is None:  # created by the change
                    host = self._entry_host_path(entry, f["path"])
                    if os.path.lexists(host):
                        os.unlink(host)
                        fsync_dir(os.path.dirname(host))
                    continue
                with open(os.path.join(self.state_dir, f["backup"]), "rb") as fh:
                    original = fh.read()
                if sha256(original) != f["sha256_before"]:
                    return [f"backup of {f['path']} does not match its recorded sha256"]
                _replace_file(self._entry_host_path(entry, f["path"]), original)
        else:
            ranges = [HostRange.from_json(r) for r in entry["ranges"]]
            for r in sorted(ranges, key=lambda r: -r.stage):
                self._pwrite(r.host_offset, r.old)
            self._sync()
        return self._verify(None, {f["path"]: f["sha256_before"] for f in entry["files"]}, entry)

    def resolve_interrupted(self) -> list[dict]:
        """Settle changes a kill left before 'verified': report and fix, never leave them mixed."""
        settled = []
        for entry in self.journal.changes():
            if entry["status"] not in (J.PLANNED, J.APPLYING, J.APPLIED, J.UNDOING):
                continue
            state = self._host_state(entry)
            if entry["status"] == J.UNDOING or state == "mixed":
                problems = self._restore_entry(entry)
                self.journal.status(entry["id"], J.ROLLED_BACK if entry["status"] != J.UNDOING else J.UNDONE,
                                    reason=f"interrupted ({entry['status']}, target {state}); old bytes put back",
                                    restored_ok=not problems)
                outcome = "restored to as it was" if not problems else "restore check failed: " + "; ".join(problems)
            elif state == "old":
                self._restore_container_metadata(entry)
                self.journal.status(entry["id"], J.ABANDONED, reason="interrupted before any byte was written")
                outcome = "as it was (nothing had been written)"
            else:
                problems = self._verify(None, {f["path"]: f["sha256_after"] for f in entry["files"]}, entry)
                if problems:
                    self._restore_entry(entry)
                    self.journal.status(entry["id"], J.ROLLED_BACK, reason="interrupted; re-read failed", problems=problems)
                    outcome = "restored to as it was (the written state did not verify)"
                else:
                    self.journal.status(entry["id"], J.VERIFIED, reason="interrupted after writing; verified now")
                    outcome = "as intended (verified now)"
            settled.append({"id": entry["id"], "summary": entry["summary"], "outcome": outcome})
            self.warn(f"change {entry['id']} ({entry['summary']}) had been interrupted: {outcome}")
        return settled

    def undo(self, entry: dict, *, force: bool = False) -> dict:
        if entry["status"] in (J.UNDONE, J.ROLLED_BACK, J.ABANDONED):
            return {"id": entry["id"], "outcome": f"nothing to undo ({entry['status']})"}
        state = self._host_state(entry)
        if state == "old":
            self._restore_container_metadata(entry)
            self.journal.status(entry["id"], J.UNDONE, reason="target already held the original bytes")
            return {"id": entry["id"], "outcome": "already as it was"}
        if state != "new" and not force:
            raise Refused(f"change {entry['id']}: the target changed since ({state} bytes at its ranges); "
                          "--force restores the original bytes anyway")
        self.journal.status(entry["id"], J.UNDOING)
        problems = self._restore_entry(entry)
        if problems:
            raise VerificationFailed(f"undo of {entry['id']}: " + "; ".join(problems))
        self.journal.status(entry["id"], J.UNDONE)
        return {"id": entry["id"], "outcome": "undone; original bytes confirmed by sha256"}


def _replace_file(host_path: str, content: bytes, *, create: bool = False) -> None:
    """Write a whole file next to its place, fsync, rename over it, fsync the folder. With
    ``create``, an existing file is never replaced."""
    folder = os.path.dirname(host_path)
    if create and os.path.lexists(host_path):
        raise Refused(f"{host_path} exists already; not overwritten")
    tmp = os.path.join(folder, f".{os.path.basename(host_path)}.offline-fix-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        if os.path.exists(host_path):
            shutil.copymode(host_path, tmp)
        if create:
            os.link(tmp, host_path)  # fails if something appeared meanwhile, never overwrites
        else:
            os.replace(tmp, host_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    fsync_dir(folder)
