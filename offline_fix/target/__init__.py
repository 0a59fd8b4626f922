"""The target layer: what TARGET names (folder, block device, disk image), its partitions and
volumes, and read access to their files. Knows nothing of Windows beyond NTFS and BitLocker."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from offline_fix.errors import NotFound, OfflineFixError, PermissionDenied
from offline_fix.target import platform
from offline_fix.target.disk import Disk, open_disk
from offline_fix.target.errors import ContainerError
from offline_fix.target.fs import FileSystem, FolderFS, NtfsFS
from offline_fix.target.partitions import Partition, PartitionTable, read_partition_table
from offline_fix.target.volumes import BITLOCKER_HELP, detect_filesystem, fat_label


@dataclass
class Volume:
    index: int
    offset: int
    size: int
    filesystem: str  # ntfs, bitlocker, fat32, ..., folder
    partition: Partition | None = None
    label: str = ""
    notes: list[str] = field(default_factory=list)
    _fs: FileSystem | None = None
    _disk: Disk | None = None
    error: OfflineFixError | None = None  # why the files cannot be read, once tried

    @property
    def readable(self) -> bool:
        return self.filesystem in ("ntfs", "folder") and self.error is None

    def fs(self) -> FileSystem:
        """The volume's files (NTFS, FAT32/FAT16 or a folder). Opened once, on first use."""
        if self.error is not None:
            raise self.error
        if self._fs is None:
            if self.filesystem not in ("ntfs", "fat32", "fat16") or self._disk is None:
                raise NotFound(f"volume {self.index} ({self.filesystem}) has no readable files")
            try:
                if self.filesystem != "ntfs":  # the EFI system partition (offline_fix/target/fat.py)
                    from offline_fix.target.fat import FatFS

                    disk, base = self._disk, self.offset
                    self._fs = FatFS(lambda off, n: disk.read(base + off, n), self.size, name=f"partition {self.index}")
                    return self._fs
                self._fs = NtfsFS(self._disk.stream(self.offset, self.size), name=f"partition {self.index}")
            except OfflineFixError as exc:
                self.error = exc
                raise
            self.label = self._fs.label
        return self._fs

    def to_dict(self) -> dict:
        d = {"index": self.index, "offset": self.offset, "size": self.size, "filesystem": self.filesystem,
             "label": self.label}
        if self.partition is not None:
            d.update({k: v for k, v in self.partition.to_dict().items() if k not in ("index", "offset", "size")})
        if self.filesystem == "bitlocker":
            d["locked"] = True
            d["unlock"] = BITLOCKER_HELP
        if self.notes:
            d["notes"] = self.notes
        return d


@dataclass
class Target:
    spec: str
    kind: str  # folder, device, image
    disk: Disk | None
    table: PartitionTable | None
    volumes: list[Volume]
    warnings: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[OfflineFixError]:
        """Why volumes could not be read (a truncated image, a broken NTFS ...)."""
        return [v.error for v in self.volumes if v.error is not None]

    def describe_container(self) -> dict:
        if self.disk is None:
            return {"format": "folder", "path": self.spec}
        return self.disk.describe()

    def close(self) -> None:
        if self.disk is not None:
            self.disk.close()

    def __enter__(self) -> "Target":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_target(spec: str) -> Target:
    """Open TARGET read-only: a folder (mounted volume or drive letter), a block device, an image."""
    drive = platform.windows_drive_root(spec)
    path = drive or spec
    if not platform.is_windows_device_path(path):
        try:
            os.stat(path)
        except FileNotFoundError:
            raise NotFound(f"no such file, folder or device: {spec}") from None
        except PermissionError:
            raise PermissionDenied(f"permission denied reaching {spec} (run as root or Administrator)") from None
        except OSError as exc:
            raise NotFound(f"{spec} cannot be opened: {exc.strerror}") from None
    if os.path.isdir(path):
        if not os.access(path, os.R_OK | os.X_OK):
            raise PermissionDenied(f"permission denied reading folder {spec}")
        volume = Volume(1, 0, 0, "folder", label=os.path.basename(os.path.abspath(path)))
        volume._fs = FolderFS(path)
        return Target(spec, "folder", None, None, [volume])
    disk = open_disk(path)
    try:
        return _open_disk_target(spec, disk)
    except BaseException:
        disk.close()
        raise


def _open_disk_target(spec: str, disk: Disk) -> Target:
    table = read_partition_table(disk.read, disk.size, disk.sector_size)
    target = Target(spec, "device" if disk.is_device else "image", disk, table, [], warnings=list(disk.warnings))
    target.warnings.extend(table.warnings)
    for part in table.partitions:
        end = min(part.offset + part.size, disk.size)
        head = disk.read(part.offset, max(0, min(4096, end - part.offset))) if part.offset < disk.size else b""
        fs_name = detect_filesystem(head) if head else "missing"
        volume = Volume(part.index, part.offset, part.size, fs_name, partition=part, _disk=disk)
        volume.notes.extend(part.problems)
        if part.problems:
            volume.error = ContainerError(f"partition {part.index} {part.problems[0]}", path=spec)
        if fs_name == "ntfs" and not part.problems:
            try:
                volume.fs()
            except OfflineFixError as exc:
                volume.notes.append(str(exc))
        elif fs_name.startswith("fat"):
            volume.label = fat_label(head, fs_name)
        target.volumes.append(volume)
    return target
