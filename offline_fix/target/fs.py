"""Read access to the files of one volume, whatever holds it, with Windows' name rules.

Two implementations share one interface:
- ``FolderFS``: a mounted volume (a folder on a Linux helper, a drive letter on a Windows helper);
- ``NtfsFS``: an NTFS volume inside a disk image or block device, read with dissect.ntfs.
Paths are relative to the volume root, with "\\" or "/" separators, matched case-insensitively as
Windows does. Links are never followed out of the volume: a hostile disk can plant
``Windows\\System32\\config`` pointing at the helper's own files.
"""

from __future__ import annotations

import os
import stat as stat_mod
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import BinaryIO

from offline_fix.errors import NotFound, OfflineFixError, PermissionDenied, Refused
from offline_fix.target.errors import FilesystemError
from offline_fix.target.platform import OpenFolder, open_folder
from offline_fix.target.ntfs_raw import _data_size, _IndexName, _RawNtfs, _RawRecord, _RunStream

MAX_PATH_DEPTH = 64


def split_path(path: str) -> list[str]:
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise Refused(f"path may not contain '..': {path}")
    if len(parts) > MAX_PATH_DEPTH:
        raise Refused(f"path deeper than {MAX_PATH_DEPTH} components: {path}")
    return parts


READ_CHUNK = 1 << 20


def read_up_to(fh: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes of ``fh`` (fewer at its end), read in chunks of at most READ_CHUNK:
    one read(n) makes Python set aside n bytes, however small the file."""
    parts = []
    total = 0
    while total < n:
        chunk = fh.read(min(READ_CHUNK, n - total))
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


@dataclass
class Entry:
    name: str
    is_dir: bool
    size: int
    mtime: datetime | None = None
    is_link: bool = False

    def to_dict(self) -> dict:
        return {"name": self.name, "is_dir": self.is_dir, "size": self.size,
                "mtime": self.mtime.isoformat() if self.mtime else None, "is_link": self.is_link}


class FileSystem:
    kind = "?"
    label = ""

    def resolve(self, path: str) -> str:
        """The path as stored (real casing), "\\"-separated; NotFound when missing."""
        raise NotImplementedError

    def open(self, path: str) -> BinaryIO:
        raise NotImplementedError

    def stat(self, path: str) -> Entry:
        raise NotImplementedError

    def listdir(self, path: str) -> list[Entry]:
        raise NotImplementedError

    def exists(self, path: str) -> bool:
        try:
            self.resolve(path)
            return True
        except NotFound:
            return False

    def is_dir(self, path: str) -> bool:
        try:
            return self.stat(path).is_dir
        except NotFound:
            return False

    def is_file(self, path: str) -> bool:
        try:
            return not self.stat(path).is_dir
        except NotFound:
            return False

    def open_folder(self, path: str) -> "OpenFolder | None":
        """The folder ``path`` opened on this machine, to read its files by name (see
        platform.OpenFolder), or None when that is not how this file system is read."""
        return None

    def read_bytes(self, path: str, limit: int = 1 << 30) -> bytes:
        """The whole file; refuses files larger than ``limit`` (hives are far smaller)."""
        entry = self.stat(path)
        if entry.is_dir:
            raise NotFound(f"{path} is a folder, not a file")
        if entry.size > limit:
            raise Refused(f"{path} is {entry.size} bytes, more than the {limit}-byte limit for this read")
        with self.open(path) as fh:
            data = fh.read(entry.size + 1)
        if len(data) != entry.size:
            raise FilesystemError(f"{path}: read {len(data)} bytes, its size says {entry.size}")
        return data


class FolderFS(FileSystem):
    kind = "folder"

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        self.label = os.path.basename(self.root.rstrip(os.sep)) or self.root

    def _host_path(self, path: str) -> str:
        current = self.root
        for part in split_path(path):
            candidate = os.path.join(current, part)
            if not os.path.lexists(candidate):
                candidate = self._match_case(current, part, path)
            current = candidate
            if os.path.islink(current):
                try:
                    target = os.path.realpath(current, strict=True)
                except FileNotFoundError:
                    target = os.path.realpath(current)  # a dangling link: NotFound below, if inside
                except OSError as exc:  # a loop of links (ELOOP), or a link that cannot be read
                    raise Refused(f"{path}: a link inside the target cannot be resolved ({current}: "
                                  f"{exc.strerror or exc}); not followed") from None
                if target != self.root and not target.startswith(self.root + os.sep):
                    raise Refused(f"{path}: a link inside the target points outside it ({current} -> {target}); not followed")
        return current

    @staticmethod
    def _match_case(folder: str, part: str, path: str) -> str:
        wanted = part.casefold()
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    if entry.name.casefold() == wanted:
                        return entry.path
        except NotADirectoryError:
            raise NotFound(f"not found: {path}") from None
        except FileNotFoundError:
            raise NotFound(f"not found: {path}") from None
        except PermissionError:
            raise PermissionDenied(f"permission denied reading {folder}") from None
        raise NotFound(f"not found: {path}")

    def host_path(self, path: str) -> str:
        """The real path on the helper (for writers); links out of the target are refused."""
        return self._host_path(path)

    def open_folder(self, path: str) -> "OpenFolder | None":
        """The folder opened once (its path checked as every path is: no link out of the target);
        its files are then opened by name, links not followed. None on Windows helpers."""
        try:
            return open_folder(self._host_path(path))
        except (OSError, OfflineFixError):
            return None  # the caller reads through open(), which names the problem

    def resolve(self, path: str) -> str:
        host = self._host_path(path)
        if not os.path.lexists(host):
            raise NotFound(f"not found: {path}")
        return os.path.relpath(host, self.root).replace(os.sep, "\\")

    def stat(self, path: str) -> Entry:
        host = self._host_path(path)
        try:
            st = os.stat(host)
        except FileNotFoundError:
            raise NotFound(f"not found: {path}") from None
        return Entry(os.path.basename(host), stat_mod.S_ISDIR(st.st_mode), st.st_size,
                     datetime.fromtimestamp(st.st_mtime, timezone.utc), os.path.islink(host))

    def open(self, path: str) -> BinaryIO:
        host = self._host_path(path)
        try:
            return open(host, "rb")
        except FileNotFoundError:
            raise NotFound(f"not found: {path}") from None
        except IsADirectoryError:
            raise NotFound(f"{path} is a folder, not a file") from None
        except PermissionError:
            raise PermissionDenied(f"permission denied reading {path}") from None

    def listdir(self, path: str) -> list[Entry]:
        host = self._host_path(path)
        out = []
        try:
            with os.scandir(host) as it:
                for entry in it:
                    try:
                        st = entry.stat(follow_symlinks=False)
                        is_dir = entry.is_dir(follow_symlinks=False)
                    except OSError:
                        continue
                    out.append(Entry(entry.name, is_dir, 0 if is_dir else st.st_size,
                                     datetime.fromtimestamp(st.st_mtime, timezone.utc), entry.is_symlink()))
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"no such folder: {path}") from None
        except PermissionError:
            raise PermissionDenied(f"permission denied listing {path}") from None
        return sorted(out, key=lambda e: e.name.casefold())


class NtfsFS(FileSystem):
    """An NTFS volume read with dissect.ntfs (case-insensitive by NTFS's own upcase table)."""

    kind = "ntfs"

    def __init__(self, stream: BinaryIO, *, name: str = "") -> None:
        from dissect.ntfs import NTFS

        try:
            self.ntfs = NTFS(stream)
        except Exception as exc:  # dissect raises assorted errors on broken volumes
            raise FilesystemError(f"NTFS volume {name} could not be opened: {exc}") from None
        self.name = name
        self._dirs: dict[tuple[str, ...], object] = {}
        self._folders: dict[tuple[str, ...], tuple[list, dict] | None] = {}  # the fast path's folder indexes
        self._raw: _RawNtfs | None = None
        self._last_fast: tuple[str | None, tuple | None] = (None, None)
        try:
            self.label = self.ntfs.volume_name or ""
        except Exception:  # a damaged $Volume only costs the label
            self.label = ""

    MAX_CACHED_DIRS = 4096

    def _record(self, path: str):
        """The MFT record of ``path``; folders met on the way are remembered (by their folded path),
        so that opening many files of one folder walks the tree once."""
        parts = split_path(path)
        folded = tuple(p.casefold() for p in parts)
        start, record = 0, None
        for i in range(len(parts), 0, -1):
            record = self._dirs.get(folded[:i])
            if record is not None:
                start = i
                break
        if record is None:
            record = self.ntfs.mft.get("")
        walked = list(parts[:start])
        for i in range(start, len(parts)):
            if self._readable(record, walked).is_reparse_point():
                raise Refused(f"{'/'.join(walked) or '/'} is a junction or symbolic link inside the image; not followed")
            try:
                record = record.get(parts[i])
            except Exception:
                raise NotFound(f"not found: {path}") from None
            walked.append(parts[i])
            if i + 1 < len(parts):  # a folder on the way
                if len(self._dirs) >= self.MAX_CACHED_DIRS:
                    self._dirs.clear()
                self._dirs[folded[:i + 1]] = record
        return self._readable(record, walked)

    @staticmethod
    def _readable(record, walked: list[str]):
        """RECORD, once its attributes parse: dissect raises assorted errors the first time the
        attributes of a damaged MFT record are read (and caches them once they parse)."""
        try:
            record.attributes
        except Exception as exc:
            raise FilesystemError(f"{'/'.join(walked) or '/'}: MFT record unreadable: {exc}") from None
        return record

    # The fast path (see "raw NTFS records" below): a folder's $I30 index is read once, and a file
    # of it is read from its own MFT record; None means "not the plain case: use dissect.ntfs".
    def _index(self, parts: list[str]) -> tuple[list, dict] | None:
        """(names, {folded name: _IndexName}) of the folder ``parts``, cached; None when the fast
        path does not apply. Raises what ``_record`` raises for the folder (links refused)."""
        key = tuple(p.casefold() for p in parts)
        if key in self._folders:
            return self._folders[key]
        record = self._record("\\".join(parts))
        found = None
        if record.is_dir() and not record.is_reparse_point() and getattr(record, "segment", None) is not None:
            if self._raw is None:
                self._raw = _RawNtfs(self.ntfs)
            raw = self._raw.record(record.segment)
            names = self._raw.index(raw) if raw is not None and raw.is_dir and not raw.is_link else None
            if names is not None:
                found = (names, {})
                for entry in names:
                    found[1].setdefault(entry.name.casefold(), entry)
        if len(self._folders) >= self.MAX_CACHED_DIRS:
            self._folders.clear()
        self._folders[key] = found
        return found

    def _fast(self, path: str) -> tuple[_IndexName, _RawRecord] | None:
        """The index entry and the raw MFT record of a file, or None (use the dissect.ntfs path)."""
        if self._last_fast[0] == path:  # stat() then open() of one file: its record is read once
            return self._last_fast[1]
        parts = split_path(path)
        if not parts:
            return None
        try:
            index = self._index(parts[:-1])
        except OfflineFixError:
            return None  # the dissect path raises the same error, naming the whole path
        entry = index[1].get(parts[-1].casefold()) if index is not None else None
        if entry is None:
            return None
        record = self._raw.record(entry.segment)
        self._last_fast = (path, None if record is None else (entry, record))
        return self._last_fast[1]

    def resolve(self, path: str) -> str:
        record = self._record(path)
        try:
            return record.full_path().lstrip("\\")
        except Exception:
            return "\\".join(split_path(path))

    def stat(self, path: str) -> Entry:
        fast = self._fast(path)
        if fast is not None and (fast[1].is_dir or fast[1].data is not None):
            entry, record = fast
            size = 0 if record.is_dir else _data_size(record.data)
            return Entry(record.name or entry.name, record.is_dir, size, record.mtime, record.is_link)
        return self._entry(self._record(path), path)

    @staticmethod
    def _entry(record, path: str) -> Entry:
        try:
            is_dir = record.is_dir()
            name = record.filename or split_path(path)[-1:] and split_path(path)[-1] or ""
            size = 0 if is_dir else record.size()
        except Exception as exc:
            raise FilesystemError(f"{path}: unreadable MFT record: {exc}") from None
        mtime = None
        try:
            info = record.attributes[0x10][0]  # $STANDARD_INFORMATION
            mtime = info.last_modification_time
        except Exception:
            pass
        return Entry(name, is_dir, size, mtime, record.is_reparse_point())

    def open(self, path: str) -> BinaryIO:
        fast = self._fast(path)
        if fast is not None and not fast[1].is_link and not fast[1].is_dir and fast[1].data is not None:
            return _RunStream(self._raw, fast[1].data, path)
        record = self._record(path)
        if record.is_reparse_point():
            raise Refused(f"{path} is a junction or symbolic link inside the image; not followed")
        if record.is_dir():
            raise NotFound(f"{path} is a folder, not a file")
        try:
            return record.open()
        except Exception as exc:
            raise FilesystemError(f"{path}: data cannot be read: {exc}") from None

    def listdir(self, path: str) -> list[Entry]:
        try:
            index = self._index(split_path(path))
        except OfflineFixError:
            index = None  # the dissect path below raises it again, worded for a listing
        if index is not None:
            out = {}
            for e in index[0]:
                if e.name != ".":
                    # $FILE_NAME copies in the index carry sizes as of the last rename; stat() is exact.
                    out[e.name] = Entry(e.name, e.is_dir, 0 if e.is_dir else e.size, e.mtime, e.is_link)
            return sorted(out.values(), key=lambda e: e.name.casefold())
        record = self._record(path)
        if not record.is_dir():
            raise NotFound(f"no such folder: {path}")
        out = {}
        try:
            for name, entry in record.listdir().items():
                attr = entry.attribute
                if name == "." or attr.flags == 2:  # namespace 2: a DOS 8.3 alias of a listed name
                    continue
                is_dir = attr.is_dir()
                # $FILE_NAME copies in the index carry sizes as of the last rename; stat() is exact.
                out[name] = Entry(name, is_dir, 0 if is_dir else int(attr.file_size),
                                  attr.last_modification_time, attr.is_reparse_point())
        except Exception as exc:
            raise FilesystemError(f"{path}: directory index unreadable: {exc}") from None
        return sorted(out.values(), key=lambda e: e.name.casefold())
