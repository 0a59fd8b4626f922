"""Build a test disk from a DiskSpec: real NTFS (mkntfs + libntfs-3g), real partition tables
(sfdisk), real containers (qemu-img). Each volume is built as a file of its own, then spliced
into the disk image at its partition offset.
"""

from __future__ import annotations

import json
import lzma
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from offline_fix.errors import CorruptInput, PermissionDenied, Refused
from offline_fix.target.ntfs3g import NtfsVolume, to_filetime

from images import disk
from images.disk import MIB, SECTOR
from images.spec import FORMATS, WINDOWS_TREE, DiskSpec, Source, SpecError, VolumeSpec, normalize, parse_time

BUILDER_VERSION = 1  # bump when the output for a given spec changes (invalidates caches)


@dataclass(frozen=True)
class Partition:
    """One partition of a built disk (or the whole disk, for the bare layout)."""

    number: int  # slot in the partition table, from 1; 0 for a bare volume
    role: str  # esp, msr, system-reserved, windows, data, bitlocker
    offset: int  # bytes from the start of the disk
    size: int  # bytes
    filesystem: str  # fat32, ntfs, bitlocker, none
    label: str
    type: str  # GPT type GUID, or MBR type as "0x07"
    uuid: str | None = None  # GPT partition GUID

    @property
    def sector_offset(self) -> int:
        """Offset in 512-byte sectors (what ``fls -o`` and ``icat -o`` take)."""
        return self.offset // SECTOR


@dataclass(frozen=True)
class BuiltImage:
    path: Path
    format: str
    layout: str
    virtual_size: int
    partitions: tuple[Partition, ...]
    windows_partition: int | None  # number of the first Windows volume (None for folder)
    installs: tuple[int, ...]  # numbers of every partition holding a Windows tree, in order
    spec_digest: str
    build_seconds: float

    def partition(self, number: int) -> Partition:
        for p in self.partitions:
            if p.number == number:
                return p
        raise KeyError(number)

    @property
    def windows(self) -> Partition:
        if self.windows_partition is None:
            raise KeyError("no Windows partition (folder output)")
        return self.partition(self.windows_partition)

    def to_json(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        d["partitions"] = [asdict(p) for p in self.partitions]
        return d

    @classmethod
    def from_json(cls, d: dict) -> BuiltImage:
        return cls(
            path=Path(d["path"]),
            format=d["format"],
            layout=d["layout"],
            virtual_size=d["virtual_size"],
            partitions=tuple(Partition(**p) for p in d["partitions"]),
            windows_partition=d["windows_partition"],
            installs=tuple(d["installs"]),
            spec_digest=d["spec_digest"],
            build_seconds=d["build_seconds"],
        )

    def copy_to(self, dest: str | os.PathLike) -> BuiltImage:
        """A private copy (sparse) for a test that writes to the image."""
        dest = Path(dest)
        if self.format == "folder":
            shutil.copytree(self.path, dest, symlinks=True)
        else:
            disk.sparse_copy(self.path, dest)
        return replace(self, path=dest)


# --------------------------------------------------------------------------------------------
# Planning


@dataclass(frozen=True)
class _Planned:
    number: int
    role: str
    size: int
    volume: VolumeSpec | None
    label: str
    gpt_type: str
    gpt_name: str
    filesystem: str


def _plan(spec: DiskSpec) -> list[_Planned]:
    parts: list[_Planned] = []
    if spec.layout == "gpt":
        parts.append(_Planned(0, "esp", spec.esp_mib * MIB, None, "SYSTEM", disk.GPT_ESP, "EFI system partition", "fat32"))
        parts.append(_Planned(0, "msr", spec.msr_mib * MIB, None, "", disk.GPT_MSR, "Microsoft reserved partition", "none"))
    elif spec.layout == "mbr":
        sysres = VolumeSpec(kind="data", size_mib=spec.system_reserved_mib, label="System Reserved", files=spec.boot_files)
        parts.append(_Planned(0, "system-reserved", sysres.size_mib * MIB, sysres, "System Reserved", "", "", "ntfs"))
    for v in spec.volumes:
        fs = "bitlocker" if v.kind == "bitlocker" else "ntfs"
        parts.append(_Planned(0, v.kind, v.size_mib * MIB, v, v.volume_label, disk.GPT_BASIC_DATA, "Basic data partition", fs))
    return [replace(p, number=(0 if spec.layout == "bare" else i + 1)) for i, p in enumerate(parts)]


# --------------------------------------------------------------------------------------------
# Building


def build(spec: DiskSpec, out: str | os.PathLike, fmt: str | None = None, *, check: bool = True) -> BuiltImage:
    """Build SPEC into OUT (a file, or a folder for format "folder") and return what was built.

    FMT defaults to spec.format, else "raw". OUT must not exist yet (a partial output is never
    left behind: the work happens in a temporary folder beside OUT and is renamed at the end).
    """
    if not isinstance(spec, DiskSpec):
        raise SpecError("build() takes a DiskSpec", found=type(spec).__name__)
    fmt = fmt or spec.format or "raw"
    if fmt not in FORMATS:
        raise SpecError("unknown output format", field="format", expected="|".join(FORMATS), found=fmt)
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise Refused("output exists already; not overwriting it", path=str(out))
    if not out.parent.is_dir():
        raise SpecError("the output's folder does not exist", path=str(out.parent))
    started = time.perf_counter()
    digest = spec.digest({"format": fmt, "builder": BUILDER_VERSION})
    try:
        return _build(spec, out, fmt, check, started, digest)
    except (lzma.LZMAError, EOFError) as exc:
        raise CorruptInput(f"a .xz source is damaged: {exc}") from None
    except PermissionError as exc:
        raise PermissionDenied(f"host file access refused: {exc.strerror}", path=exc.filename) from None
    except OSError as exc:
        raise disk.ToolFailed(f"host I/O error: {exc.strerror or exc}", path=exc.filename) from None


def _build(spec: DiskSpec, out: Path, fmt: str, check: bool, started: float, digest: str) -> BuiltImage:
    work = Path(tempfile.mkdtemp(prefix=".images-build-", dir=out.parent))
    try:
        if fmt == "folder":
            windows = next((v for v in spec.volumes if v.kind == "windows"), spec.volumes[0])
            tree = work / "tree"
            _write_folder(windows, tree, spec)
            os.rename(tree, out)
            return BuiltImage(out, fmt, spec.layout, 0, (), None, (), digest, time.perf_counter() - started)
        raw = work / "disk.raw"
        partitions, size = _build_raw(spec, raw, work)
        if fmt == "raw":
            result = raw
        else:
            result = work / f"disk.{fmt}"
            disk.convert(raw, result, fmt)
        if check:
            disk.check_container(result, fmt, size)
        os.rename(result, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    installs = tuple(p.number for p in partitions if p.role == "windows")
    return BuiltImage(
        path=out,
        format=fmt,
        layout=spec.layout,
        virtual_size=size,
        partitions=tuple(partitions),
        windows_partition=installs[0] if installs else None,
        installs=installs,
        spec_digest=digest,
        build_seconds=time.perf_counter() - started,
    )


def _build_raw(spec: DiskSpec, raw: Path, work: Path) -> tuple[list[Partition], int]:
    plan = _plan(spec)
    if spec.layout == "bare":
        (p,) = plan
        _build_volume(p, raw, 0, spec)
        return [_partition(p, 0, spec)], p.size
    offsets, pos = [], MIB  # 1 MiB aligned, as Windows does
    for p in plan:
        offsets.append(pos)
        pos += p.size
    size = pos + MIB  # room for the backup GPT
    disk.make_sparse(raw, size)
    table = []
    for p, off in zip(plan, offsets):
        entry = {"start": off // SECTOR, "size": p.size // SECTOR}
        if spec.layout == "gpt":
            entry.update(type=p.gpt_type, uuid=disk.derived_uuid(spec.seed, f"partition {p.number}"), name=p.gpt_name)
        else:
            entry.update(type=f"{disk.MBR_NTFS:x}", bootable=p.role == "system-reserved")
        table.append(entry)
    label_id = disk.derived_uuid(spec.seed, "disk") if spec.layout == "gpt" else f"0x{disk.derived_u32(spec.seed, 'disk'):08x}"
    disk.write_partition_table(raw, spec.layout, table, label_id=label_id)
    fd = os.open(raw, os.O_WRONLY)
    try:
        for p, off in zip(plan, offsets):
            if p.role == "msr":
                continue
            vol = work / f"p{p.number}.vol"
            _build_volume(p, vol, off // SECTOR, spec)
            disk.splice(vol, fd, off)
            vol.unlink()
    finally:
        os.close(fd)
    return [_partition(p, off, spec) for p, off in zip(plan, offsets)], size


def _partition(p: _Planned, offset: int, spec: DiskSpec) -> Partition:
    if spec.layout == "gpt":
        ptype, puuid = p.gpt_type, disk.derived_uuid(spec.seed, f"partition {p.number}")
    elif spec.layout == "mbr":
        ptype, puuid = f"0x{disk.MBR_NTFS:02x}", None
    else:
        ptype, puuid = "", None
    return Partition(p.number, p.role, offset, p.size, p.filesystem, p.label, ptype, puuid)


def _build_volume(p: _Planned, path: Path, hidden_sectors: int, spec: DiskSpec) -> None:
    role_seed = f"volume {p.number} {p.role}"
    if p.filesystem == "fat32":
        disk.make_fat32(path, p.size, hidden_sectors=hidden_sectors)
        _fill_fat(path, spec)
    elif p.filesystem == "bitlocker":
        disk.make_fake_bitlocker(path, p.size, hidden_sectors=hidden_sectors, seed=disk.derived_u32(spec.seed, role_seed))
    else:
        assert p.volume is not None  # planning gives every NTFS partition its VolumeSpec
        make_ntfs(path, p.size, p.volume, hidden_sectors=hidden_sectors, serial=disk.derived_u64(spec.seed, role_seed), spec=spec)


def make_ntfs(path: Path, size: int, vol: VolumeSpec, *, hidden_sectors: int, serial: int, spec: DiskSpec) -> None:
    """mkntfs on a file of SIZE bytes, then the volume's folders, files and links via libntfs-3g."""
    disk.make_sparse(path, size)
    disk.run(
        [
            "mkntfs", "-F", "-Q", "-q", "-s", "512", "-c", str(vol.cluster_size), "-p", str(hidden_sectors),
            "-H", "255", "-S", "63", "-L", vol.volume_label, str(path),
        ]
    )
    disk.patch_ntfs_serial(path, serial)
    default = to_filetime(parse_time(spec.timestamp))
    with NtfsVolume(path, ignore_hibernation=True) as ntfs:
        dirs = _all_dirs(vol)
        for d in dirs:
            ntfs.mkdir(d)
        for winpath, src in sorted(vol.files.items(), key=lambda kv: normalize(kv[0]).upper()):
            with src.open() as stream:
                ntfs.write_file(normalize(winpath), stream, times=_times(src, default))
        for winpath, link in sorted(vol.links.items()):
            if link.kind == "junction":
                ntfs.create_junction(normalize(winpath), link.target)
            else:
                ntfs.create_symlink(normalize(winpath), link.target, directory=link.directory)
        # Last, as creating children stamps a folder with the current time.
        for d in dirs:
            ntfs.set_times(d, default, default, default)


def _all_dirs(vol: VolumeSpec) -> list[str]:
    """Every folder of the volume (the tree, given dirs, parents of files and links), parents first."""
    wanted = list(WINDOWS_TREE) if vol.kind == "windows" and vol.windows_tree else []
    wanted += [normalize(d) for d in vol.dirs]
    for p in list(vol.files) + list(vol.links):
        parts = normalize(p).split("\\")[:-1]
        if parts:
            wanted.append("\\".join(parts))
    seen: dict[str, str] = {}
    for d in wanted:
        parts = d.split("\\")
        for i in range(1, len(parts) + 1):
            sub = "\\".join(parts[:i])
            seen.setdefault(sub.upper(), sub)
    return sorted(seen.values(), key=lambda s: (s.count("\\"), s.upper()))


def _times(src: Source, default: int) -> tuple[int, int, int]:
    created = to_filetime(parse_time(src.created)) if src.created else default
    modified = to_filetime(parse_time(src.modified)) if src.modified else created if src.created else default
    return created, modified, modified


def _fill_fat(path: Path, spec: DiskSpec) -> None:
    if not spec.boot_files:
        return
    default = parse_time(spec.timestamp).timestamp()
    with tempfile.TemporaryDirectory(prefix="esp-", dir=path.parent) as tmp:
        files = []
        for i, (winpath, src) in enumerate(sorted(spec.boot_files.items())):
            host = Path(tmp) / f"f{i}"
            with src.open() as fin, open(host, "wb") as fout:
                shutil.copyfileobj(fin, fout, disk.MIB)
            stamp = parse_time(src.modified).timestamp() if src.modified else default
            os.utime(host, (stamp, stamp))
            files.append((normalize(winpath), host))
        disk.fat_put(path, files)


def _write_folder(vol: VolumeSpec, root: Path, spec: DiskSpec) -> None:
    """The volume's tree as a plain folder (a stand-in for a mounted volume). Links become
    POSIX symbolic links to the target as given (backslashes turned into slashes)."""
    root.mkdir()
    default = parse_time(spec.timestamp).timestamp()
    dirs = _all_dirs(vol)
    for d in dirs:
        (root / d.replace("\\", "/")).mkdir(exist_ok=True)
    for winpath, src in sorted(vol.files.items()):
        host = root / normalize(winpath).replace("\\", "/")
        with src.open() as fin, open(host, "wb") as fout:
            shutil.copyfileobj(fin, fout, disk.MIB)
        stamp = parse_time(src.modified).timestamp() if src.modified else default
        os.utime(host, (stamp, stamp))
    for winpath, link in sorted(vol.links.items()):
        os.symlink(link.target.replace("\\", "/"), root / normalize(winpath).replace("\\", "/"))
    for d in reversed(dirs):
        os.utime(root / d.replace("\\", "/"), (default, default))


def describe(img: BuiltImage) -> str:
    """A short human summary (the CLI prints it)."""
    lines = [f"{img.path}: {img.format}, {img.layout}, {img.virtual_size // MIB} MiB, built in {img.build_seconds:.2f} s"]
    for p in img.partitions:
        mark = " <- Windows" if p.number == img.windows_partition else ""
        lines.append(
            f"  #{p.number} {p.role:<15} {p.filesystem:<9} offset {p.offset // MIB:>5} MiB "
            f"(sector {p.sector_offset}), {p.size // MIB} MiB {p.label!r}{mark}"
        )
    return "\n".join(lines)


def to_json_text(img: BuiltImage) -> str:
    return json.dumps(img.to_json(), indent=2)
