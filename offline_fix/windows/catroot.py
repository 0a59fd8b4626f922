"""CatRoot and servicing\\Packages of an offline Windows install: what is there, what is missing,
what is damaged, and how it compares with a baseline taken on a healthy machine.

Folders (relative to the Windows folder):

``System32\\CatRoot\\{F750E6C3-38EE-11D1-85E5-00C04FC295EE}``
    DRIVER_ACTION_VERIFY: the catalogs Code Integrity and driver signing look file hashes up in.
    When catalogs are missing here, catalog-signed drivers look unsigned and Windows refuses them.
``System32\\CatRoot\\{127D0A1D-4EF2-11D1-8608-00C04FC295EE}``
    the other catalog subsystem Windows keeps (a few catalogs); counted and baselined.
``System32\\catroot2``
    the catalog database the Cryptographic Services keep over those folders (only its presence
    is reported).
``servicing\\Packages``
    the servicing stack's copy of every package catalog (``*.cat`` next to ``*.mum``): the source
    ``catroot restore`` copies missing catalogs from.

"Missing" = a ``.cat`` in servicing\\Packages with no file of the same name (case-insensitive) in
CatRoot\\{F750E6C3-...}. Catalog content is checked with signing.catalog's parser (through the
cached index of signing.index): empty (0 bytes), zero-filled, unparsable and unsigned catalogs
are reported; the signature itself is not verified here (``drivers verify`` does, per catalog
it uses). Listing reads each folder once (FileSystem.listdir); file sizes are taken from a stat
of each file only where content is read (NTFS index entries may carry stale sizes).

Baseline (JSON, ``BASELINE_FORMAT``): the Windows build and, per CatRoot folder, every catalog's
name, size and sha256; ``compare_baseline`` reports missing, extra and changed catalogs.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from offline_fix.errors import CorruptInput, NotFound, OfflineFixError, input_file
from offline_fix.signing.index import (
    MAX_CATALOG_SIZE,
    STATUS_EMPTY,
    STATUS_OK,
    STATUS_UNPARSABLE,
    STATUS_UNSIGNED,
    CatalogSource,
    build_index,
)
from offline_fix.target.fs import Entry, FileSystem, read_up_to

DRIVER_ACTION_VERIFY = "{F750E6C3-38EE-11D1-85E5-00C04FC295EE}"
CATROOT_OTHER = "{127D0A1D-4EF2-11D1-8608-00C04FC295EE}"
CATROOT = "catroot"            # role names, also the keys of --json and of the baseline
CATROOT_127D = "catroot-127d"
PACKAGES = "packages"
FOLDERS = {
    CATROOT: f"System32\\CatRoot\\{DRIVER_ACTION_VERIFY}",
    CATROOT_127D: f"System32\\CatRoot\\{CATROOT_OTHER}",
    PACKAGES: "servicing\\Packages",
}
CATROOT2 = "System32\\catroot2"
STATUS_ZERO_FILLED = "zero-filled"
BAD_STATUSES = (STATUS_EMPTY, STATUS_ZERO_FILLED, STATUS_UNPARSABLE, STATUS_UNSIGNED)
BASELINE_FORMAT = "offline-fix catroot baseline"
BASELINE_VERSION = 1
MAX_BASELINE_SIZE = 64 << 20
MAX_BASELINE_ENTRIES = 1_000_000


class BaselineError(CorruptInput):
    """A baseline file that is not JSON or not in the baseline format."""


@dataclass
class CatalogFile:
    name: str
    path: str                     # on the volume, real casing of the folder
    size: int
    mtime: datetime | None = None
    status: str | None = None     # ok, unsigned, empty, zero-filled, unparsable; None: not read
    reason: str | None = None
    members: int | None = None
    sha256: str | None = None

    @property
    def bad(self) -> bool:
        return self.status in BAD_STATUSES

    def to_dict(self) -> dict:
        d = {"name": self.name, "path": self.path, "size": self.size, "status": self.status}
        if self.reason:
            d["reason"] = self.reason
        if self.members is not None:
            d["members"] = self.members
        if self.sha256 is not None:
            d["sha256"] = self.sha256
        return d


@dataclass
class Folder:
    role: str
    path: str                      # on the volume (real casing when present)
    present: bool
    files: list[CatalogFile] = field(default_factory=list)
    error: str | None = None       # why it could not be listed

    def by_name(self) -> dict[str, CatalogFile]:
        return {f.name.casefold(): f for f in self.files}

    def bad(self) -> list[CatalogFile]:
        return [f for f in self.files if f.bad]

    def to_dict(self, *, files: bool = True) -> dict:
        d = {"path": self.path, "present": self.present, "count": len(self.files)}
        if self.error:
            d["error"] = self.error
        bad = self.bad()
        d["damaged"] = [f.to_dict() for f in bad]
        if files:
            d["files"] = [f.to_dict() for f in self.files]
        return d


@dataclass
class BaselineDiff:
    build: int | None              # the baseline's build
    missing: list[str]             # "catroot\\name": in the baseline, not on the disk
    extra: list[str]               # on the disk, not in the baseline
    changed: list[dict]            # same name, other size or sha256

    @property
    def differs(self) -> bool:
        return bool(self.missing or self.extra or self.changed)

    def to_dict(self) -> dict:
        return {"build": self.build, "missing": self.missing, "extra": self.extra, "changed": self.changed}


@dataclass
class Inventory:
    windows_dir: str
    folders: dict[str, Folder]
    catroot2_present: bool
    build: int | None = None
    contents_checked: bool = False
    baseline: BaselineDiff | None = None
    index_stats: dict[str, dict] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def catroot(self) -> Folder:
        return self.folders[CATROOT]

    @property
    def packages(self) -> Folder:
        return self.folders[PACKAGES]

    @property
    def missing(self) -> list[CatalogFile]:
        """Package catalogs with no CatRoot\\{F750E6C3-...} file of the same name."""
        have = self.catroot.by_name()
        return [f for f in self.packages.files if f.name.casefold() not in have]

    @property
    def healthy(self) -> bool:
        return (self.catroot.present and self.packages.present and not self.missing
                and not any(f.bad() for f in self.folders.values())
                and not (self.baseline is not None and self.baseline.differs))

    def verdict(self, restore_hint: str) -> str:
        """One line for people: what is wrong (most important first) and the command that fixes it."""
        cat, pkg = self.catroot, self.packages
        parts = []
        missing = self.missing
        if not cat.present:
            parts.append(f"CatRoot\\{DRIVER_ACTION_VERIFY} does not exist"
                         + (f" ({len(pkg.files):,} package catalogs could fill it); run `{restore_hint}`"
                            if pkg.files else ""))
        elif missing:
            parts.append(f"CatRoot is missing {len(missing):,} of {len(pkg.files):,} package catalogs; "
                         f"run `{restore_hint}`")
        if not pkg.present:
            parts.append("Windows\\servicing\\Packages does not exist: missing catalogs cannot be told")
        for role, label in ((CATROOT, "CatRoot"), (CATROOT_127D, f"CatRoot\\{CATROOT_OTHER}"),
                            (PACKAGES, "servicing\\Packages")):
            bad = self.folders[role].bad()
            if bad:
                kinds = sorted({f.status for f in bad})
                fix = ""
                if role == CATROOT and any(f.name.casefold() in pkg.by_name() for f in bad):
                    fix = f" (`{restore_hint} --overwrite` replaces them from servicing\\Packages)"
                parts.append(f"{len(bad):,} catalog{'s' if len(bad) != 1 else ''} in {label} "
                             f"{'are' if len(bad) != 1 else 'is'} {' or '.join(kinds)}{fix}")
        if self.baseline is not None and self.baseline.differs:
            b = self.baseline
            parts.append(f"versus the baseline{f' (build {b.build})' if b.build else ''}: {len(b.missing):,} missing, "
                         f"{len(b.extra):,} extra, {len(b.changed):,} changed")
        if parts:
            return "; ".join(parts)
        checked = "" if self.contents_checked else " (contents not checked)"
        return (f"CatRoot holds all {len(pkg.files):,} package catalogs ({len(cat.files):,} catalogs in "
                f"{DRIVER_ACTION_VERIFY}){checked}; no damaged catalog found")

    def to_dict(self, restore_hint: str, *, files: bool = False) -> dict:
        return {
            "windows_dir": self.windows_dir,
            "build": self.build,
            "healthy": self.healthy,
            "verdict": self.verdict(restore_hint),
            "catroot_count": len(self.catroot.files),
            "catroot_127d_count": len(self.folders[CATROOT_127D].files),
            "packages_count": len(self.packages.files),
            "catroot2_present": self.catroot2_present,
            "missing_count": len(self.missing),
            "missing": [f.name for f in self.missing],
            "contents_checked": self.contents_checked,
            "folders": {role: f.to_dict(files=files) for role, f in self.folders.items()},
            "baseline": self.baseline.to_dict() if self.baseline is not None else None,
            "index": self.index_stats,
            "warnings": self.warnings,
        }


# -- listing -------------------------------------------------------------------------------------
def _join(*parts: str) -> str:
    return "\\".join(p.strip("\\") for p in parts if p.strip("\\"))


def _mtime_ns(when: datetime | None) -> int:
    if when is None:
        return 0
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    delta = when - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000


def list_folder(fs: FileSystem, windows_dir: str, role: str) -> Folder:
    """The ``*.cat`` files (any case) directly inside one folder, from one directory read."""
    wanted = _join(windows_dir, FOLDERS[role])
    try:
        path = fs.resolve(wanted)
        entries: list[Entry] = fs.listdir(path)
    except NotFound:
        return Folder(role, wanted, False)
    except OfflineFixError as exc:
        return Folder(role, wanted, True, error=str(exc))
    files = [CatalogFile(e.name, f"{path}\\{e.name}", e.size, e.mtime)
             for e in entries if not e.is_dir and not e.is_link and e.name.lower().endswith(".cat")]
    files.sort(key=lambda f: f.name.casefold())
    return Folder(role, path, True, files)


def read_file(fs: FileSystem, path: str, limit: int = MAX_CATALOG_SIZE) -> bytes:
    """A whole file through one path lookup (FileSystem.read_bytes stats, then opens: two), at most
    ``limit`` bytes (more is an error naming the file)."""
    with fs.open(path) as fh:
        data = read_up_to(fh, limit + 1)
    if len(data) > limit:
        raise CorruptInput("file larger than allowed", path=path, expected=f"<= {limit} bytes", found=f"> {limit}")
    return data


class _Reader:
    """Reads the catalogs of one folder for the index, recording each file's exact size (and
    sha256 when asked) as it goes. A folder on this machine is opened once and its files read by
    name (FileSystem.open_folder); other file systems are read path by path."""

    def __init__(self, fs: FileSystem, folder: Folder, hashes: bool) -> None:
        self.fs = fs
        self.local = fs.open_folder(folder.path) if folder.files else None
        self.hashes = hashes
        self.sizes: dict[str, int] = {}
        self.sha256: dict[str, str] = {}

    def read(self, f: CatalogFile) -> bytes:
        if self.local is not None:
            data = self.local.read(f.name, MAX_CATALOG_SIZE)[0]  # OSError: "unparsable" in the index
        else:
            try:
                data = read_file(self.fs, f.path)
            except OfflineFixError as exc:  # signing.index turns OSError into "unparsable"
                raise OSError(5, str(exc)) from None
        self.sizes[f.path] = len(data)
        if self.hashes:
            self.sha256[f.path] = hashlib.sha256(data).hexdigest()
        return data

    def source(self, f: CatalogFile) -> CatalogSource:
        return CatalogSource(f.name, f.path, f.size, _mtime_ns(f.mtime), lambda f=f: self.read(f))


def catalog_index(fs: FileSystem, folder: Folder, *, state_dir: str | None = None, hashes: bool = False,
                  progress: Callable[[int, int], None] | None = None):
    """Index the catalogs of ``folder`` (signing.index, cached in ``state_dir`` by path and the size
    and mtime the directory listing gives), setting each file's status; with ``hashes``, also its
    sha256 and exact size (each file read at most once). Returns the CatalogIndex (digest lookups,
    lazy signature checks)."""
    readable = [f for f in folder.files if f.status is None]
    reader = _Reader(fs, folder, hashes)
    index = build_index([reader.source(f) for f in readable], state_dir=state_dir,
                        cache_name=f"catalogs-{folder.role}", progress=progress)
    for f in readable:
        entry = index.entries[f.path]
        f.status, f.reason, f.members = entry.status, entry.error, entry.member_count
        if hashes and f.path not in reader.sha256:  # taken from the cache: read it now
            try:
                reader.read(f)
            except OSError as exc:
                f.status, f.reason = STATUS_UNPARSABLE, f"cannot read: {exc.strerror}"
        f.size = reader.sizes.get(f.path, f.size)
        f.sha256 = reader.sha256.get(f.path)
        if f.status == STATUS_EMPTY and f.size > 0:
            f.status = STATUS_ZERO_FILLED
        if f.status == STATUS_UNSIGNED and not f.reason:
            f.reason = "the catalog carries no signature (no SignerInfo)"
    return index


def inventory(fs: FileSystem, windows_dir: str = "Windows", *, contents: bool = True, hashes: bool = False,
              state_dir: str | None = None, build: int | None = None,
              progress: Callable[[str, int, int], None] | None = None) -> Inventory:
    """List CatRoot (both folders), catroot2 and servicing\\Packages; with ``contents``, parse every
    catalog (see catalog_index)."""
    folders = {role: list_folder(fs, windows_dir, role) for role in FOLDERS}
    inv = Inventory(windows_dir, folders, fs.exists(_join(windows_dir, CATROOT2)), build=build,
                    contents_checked=contents)
    for f in folders.values():
        if f.error:
            inv.warnings.append(f"{f.path} could not be listed: {f.error}")
    if contents:
        for role, folder in folders.items():
            step = (lambda done, total, r=role: progress(r, done, total)) if progress else None
            inv.index_stats[role] = catalog_index(fs, folder, state_dir=state_dir, hashes=hashes, progress=step).stats
    return inv


# -- baseline ------------------------------------------------------------------------------------
BASELINE_ROLES = (CATROOT, CATROOT_127D)


def make_baseline(inv: Inventory, *, source: str = "") -> dict:
    """The baseline document of an inventory taken with ``hashes=True``."""
    doc = {"format": BASELINE_FORMAT, "version": BASELINE_VERSION, "build": inv.build,
           "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(), "source": source,
           "folders": {}}
    for role in BASELINE_ROLES:
        folder = inv.folders[role]
        doc["folders"][role] = {"path": FOLDERS[role], "present": folder.present,
                                "files": [{"name": f.name, "size": f.size, "sha256": f.sha256} for f in folder.files]}
    return doc


def load_baseline(path: str) -> dict:
    """Read and check a baseline file; BaselineError names what is wrong."""
    with input_file(path, "baseline file") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > MAX_BASELINE_SIZE:
            raise BaselineError("baseline file too large", path=path, expected=f"<= {MAX_BASELINE_SIZE}", found=size)
        raw = fh.read(MAX_BASELINE_SIZE + 1)
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BaselineError(f"baseline is not JSON: {exc}", path=path) from None
    if not isinstance(doc, dict) or doc.get("format") != BASELINE_FORMAT:
        raise BaselineError("not an offline-fix catroot baseline", path=path, field="format",
                            expected=BASELINE_FORMAT, found=doc.get("format") if isinstance(doc, dict) else type(doc).__name__)
    if doc.get("version") != BASELINE_VERSION:
        raise BaselineError("unsupported baseline version", path=path, field="version",
                            expected=BASELINE_VERSION, found=doc.get("version"))
    folders = doc.get("folders")
    if not isinstance(folders, dict):
        raise BaselineError("baseline has no folders", path=path, field="folders")
    count = 0
    for role in BASELINE_ROLES:
        files = folders.get(role, {}).get("files") if isinstance(folders.get(role), dict) else None
        if not isinstance(files, list):
            raise BaselineError("baseline folder has no file list", path=path, field=f"folders.{role}.files")
        for n, item in enumerate(files):
            count += 1
            if count > MAX_BASELINE_ENTRIES:
                raise BaselineError("baseline lists too many files", path=path, expected=f"<= {MAX_BASELINE_ENTRIES}")
            if not (isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("size"), int)
                    and (item.get("sha256") is None or isinstance(item.get("sha256"), str))):
                raise BaselineError("baseline entry malformed", path=path, field=f"folders.{role}.files[{n}]",
                                    expected="{name: str, size: int, sha256: str}", found=item)
    build = doc.get("build")
    if build is not None and not isinstance(build, int):
        raise BaselineError("baseline build is not a number", path=path, field="build", found=build)
    return doc


def compare_baseline(inv: Inventory, baseline: dict) -> BaselineDiff:
    """Missing, extra and changed catalogs of the inventory (taken with ``hashes=True``) versus a
    baseline; names are "<role>\\<name>" so that both CatRoot folders can be told apart."""
    missing, extra, changed = [], [], []
    for role in BASELINE_ROLES:
        expected = {e["name"].casefold(): e for e in baseline["folders"][role]["files"]}
        have = inv.folders[role].by_name()
        for key, e in sorted(expected.items()):
            f = have.get(key)
            if f is None:
                missing.append(f"{role}\\{e['name']}")
            elif f.size != e["size"] or (e.get("sha256") and f.sha256 and f.sha256 != e["sha256"].lower()):
                changed.append({"name": f"{role}\\{f.name}", "size": f.size, "expected_size": e["size"],
                                "sha256": f.sha256, "expected_sha256": e.get("sha256"), "status": f.status})
        extra.extend(f"{role}\\{f.name}" for key, f in sorted(have.items()) if key not in expected)
    build = baseline.get("build")
    if build and inv.build and build != inv.build:
        inv.warnings.append(f"the baseline is of build {build}, this install is build {inv.build}: "
                            "differences are expected")
    diff = BaselineDiff(build, missing, extra, changed)
    inv.baseline = diff
    return diff


# -- restore plan --------------------------------------------------------------------------------
@dataclass
class RestoreItem:
    name: str
    source: str                 # servicing\Packages path
    dest: str                   # CatRoot path
    size: int
    content: bytes = b""
    replaces: CatalogFile | None = None   # --overwrite: the CatRoot file it replaces
    old: bytes | None = None              # that file's bytes

    def to_dict(self) -> dict:
        d = {"name": self.name, "source": self.source, "dest": self.dest, "size": self.size,
             "sha256": hashlib.sha256(self.content).hexdigest()}
        if self.replaces is not None:
            d["replaces"] = {"size": self.replaces.size, "status": self.replaces.status,
                             "sha256": hashlib.sha256(self.old or b"").hexdigest()}
        return d


@dataclass
class RestorePlan:
    items: list[RestoreItem]
    skipped: list[dict]          # {"name", "reason"}: package catalogs not copied
    dest_folder: str
    dest_present: bool

    @property
    def bytes(self) -> int:
        return sum(i.size for i in self.items)


def plan_restore(fs: FileSystem, inv: Inventory, *, overwrite: bool = False) -> RestorePlan:
    """Which package catalogs to copy into CatRoot\\{F750E6C3-...}: every missing one whose content
    parses and is signed (damaged ones are skipped, saying why), and with ``overwrite`` every one
    whose CatRoot copy differs in bytes. Reads each catalog it copies (and compares) once."""
    from offline_fix.signing.index import parse_entry

    cat = inv.catroot
    dest_folder = cat.path
    have = cat.by_name()
    wanted: list[tuple[CatalogFile, CatalogFile | None]] = [(f, None) for f in inv.missing]
    if overwrite:
        wanted += [(f, have[f.name.casefold()]) for f in inv.packages.files if f.name.casefold() in have]
    items, skipped = [], []
    for pkg, existing in sorted(wanted, key=lambda w: w[0].name.casefold()):
        try:
            content = read_file(fs, pkg.path)
        except OfflineFixError as exc:
            skipped.append({"name": pkg.name, "reason": f"cannot read the package catalog: {exc}"})
            continue
        entry = parse_entry(CatalogSource(pkg.name, pkg.path, len(content), 0, lambda c=content: c))
        status = STATUS_ZERO_FILLED if entry.status == STATUS_EMPTY and content else entry.status
        if status != STATUS_OK:
            skipped.append({"name": pkg.name, "reason": f"the package catalog is {status}"
                            + (f": {entry.error}" if entry.error else "")})
            continue
        old = None
        if existing is not None:
            try:
                old = read_file(fs, existing.path)
            except OfflineFixError as exc:
                skipped.append({"name": pkg.name, "reason": f"cannot read the CatRoot copy: {exc}"})
                continue
            if old == content:
                continue
        dest = existing.path if existing is not None else f"{dest_folder}\\{pkg.name}"
        items.append(RestoreItem(pkg.name, pkg.path, dest, len(content), content, existing, old))
    return RestorePlan(items, skipped, dest_folder, cat.present)
