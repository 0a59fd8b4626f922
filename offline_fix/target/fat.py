"""FAT32 and FAT16 volumes, read-only and bounded: the EFI system partition that holds
``EFI\\Microsoft\\Boot\\BCD`` on UEFI (Generation 2) VMs.

Spec: Microsoft Extensible Firmware Initiative FAT32 File System Specification, version 1.03
(fatgen103): the BIOS parameter block (section 3), the FAT type by count of clusters (section 3.5),
FAT entries (section 4), directory entries (section 6) and long names (section 7).
https://download.microsoft.com/download/1/6/1/161ba512-40e2-4cc9-843a-923143f3456c/fatgen103.doc

Every read goes through one bounded reader (exactly the requested bytes, or an error naming offset
and field); cluster chains keep a visited set and stop at the volume's cluster count; a directory
holds at most 65536 entries (the spec's own limit). ``FatFS.extents(path)`` gives where a file's
bytes lie in the volume, so that the write engine can patch a file in place when its size stays
the same; the FAT itself and the directories are never written.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import BinaryIO

from offline_fix.errors import NotFound, Unsupported
from offline_fix.target.errors import FilesystemError
from offline_fix.target.fs import Entry, FileSystem, split_path
from offline_fix.target.stream import ReadOnlyStream

# -- structures (fatgen103 section 3: the boot sector and BPB) -------------------------------------
# offset  size  name
#      0     3  BS_jmpBoot
#      3     8  BS_OEMName
#     11     2  BPB_BytsPerSec
#     13     1  BPB_SecPerClus
#     14     2  BPB_RsvdSecCnt
#     16     1  BPB_NumFATs
#     17     2  BPB_RootEntCnt      (0 on FAT32)
#     19     2  BPB_TotSec16
#     21     1  BPB_Media
#     22     2  BPB_FATSz16         (0 on FAT32)
#     24     2  BPB_SecPerTrk
#     26     2  BPB_NumHeads
#     28     4  BPB_HiddSec
#     32     4  BPB_TotSec32
BPB = struct.Struct("<3s8sHBHBHHBHHHII")
# FAT32 only, from offset 36: BPB_FATSz32, BPB_ExtFlags, BPB_FSVer, BPB_RootClus, BPB_FSInfo,
# BPB_BkBootSec, BPB_Reserved[12], BS_DrvNum, BS_Reserved1, BS_BootSig, BS_VolID, BS_VolLab[11],
# BS_FilSysType[8]
BPB32 = struct.Struct("<IHHIHH12sBBBI11s8s")
BPB32_OFFSET = 36
# FAT12/16 only, from offset 36: BS_DrvNum, BS_Reserved1, BS_BootSig, BS_VolID, BS_VolLab[11],
# BS_FilSysType[8]
BPB16 = struct.Struct("<BBBI11s8s")
BPB16_OFFSET = 36
BOOT_SIGNATURE_OFFSET = 510
BOOT_SIGNATURE = b"\x55\xaa"
assert BPB.size == 36 and BPB32_OFFSET + BPB32.size == 90 and BPB16_OFFSET + BPB16.size == 62

# fatgen103 section 6: the 32-byte directory entry
#      0    11  DIR_Name (8.3, space padded; [0] 0xE5 = free, 0x00 = end, 0x05 stands for 0xE5)
#     11     1  DIR_Attr
#     12     1  DIR_NTRes (Windows: 0x08 base name lower case, 0x10 extension lower case)
#     13     1  DIR_CrtTimeTenth
#     14     2  DIR_CrtTime
#     16     2  DIR_CrtDate
#     18     2  DIR_LstAccDate
#     20     2  DIR_FstClusHI
#     22     2  DIR_WrtTime
#     24     2  DIR_WrtDate
#     26     2  DIR_FstClusLO
#     28     4  DIR_FileSize
DIR_ENTRY = struct.Struct("<11sBBBHHHHHHHI")
# fatgen103 section 7: a long-name entry (13 UTF-16 characters in three pieces)
#      0     1  LDIR_Ord (0x40: last, low 6 bits: sequence 1..20)
#      1    10  LDIR_Name1
#     11     1  LDIR_Attr (ATTR_LONG_NAME)
#     12     1  LDIR_Type (0)
#     13     1  LDIR_Chksum (of the short name)
#     14    12  LDIR_Name2
#     26     2  LDIR_FstClusLO (0)
#     28     4  LDIR_Name3
LDIR_ENTRY = struct.Struct("<B10sBBB12sH4s")
assert DIR_ENTRY.size == 32 and LDIR_ENTRY.size == 32

ATTR_READ_ONLY, ATTR_HIDDEN, ATTR_SYSTEM, ATTR_VOLUME_ID = 0x01, 0x02, 0x04, 0x08
ATTR_DIRECTORY, ATTR_ARCHIVE = 0x10, 0x20
ATTR_LONG_NAME = ATTR_READ_ONLY | ATTR_HIDDEN | ATTR_SYSTEM | ATTR_VOLUME_ID
ATTR_LONG_NAME_MASK = ATTR_LONG_NAME | ATTR_DIRECTORY | ATTR_ARCHIVE
LAST_LONG_ENTRY = 0x40
NTRES_LOWER_BASE, NTRES_LOWER_EXT = 0x08, 0x10
FREE_ENTRY, END_OF_DIRECTORY, KANJI_E5 = 0xE5, 0x00, 0x05

# fatgen103 section 3.5 and 4: FAT type by cluster count; entry values
FAT12_MAX_CLUSTERS = 4085
FAT16_MAX_CLUSTERS = 65525
FAT16_EOC, FAT16_BAD = 0xFFF8, 0xFFF7
FAT32_MASK, FAT32_EOC, FAT32_BAD = 0x0FFFFFFF, 0x0FFFFFF8, 0x0FFFFFF7
FIRST_DATA_CLUSTER = 2
MAX_DIR_ENTRIES = 65536  # fatgen103 section 6: a directory may not hold more
MAX_LONG_NAME_ENTRIES = 20  # 20 x 13 = 260 characters


class FatError(FilesystemError):
    """A broken FAT volume."""


class FatBootSectorError(FatError):
    """The boot sector / BIOS parameter block is unusable."""


class FatChainError(FatError):
    """A cluster chain leaves the volume, loops, hits a free or bad cluster, or is too short."""


class FatDirectoryError(FatError):
    """A directory entry is inconsistent (size, first cluster, long name)."""


@dataclass(frozen=True)
class BootSector:
    fat_type: str  # fat16 or fat32
    bytes_per_sector: int
    sectors_per_cluster: int
    reserved_sectors: int
    fat_count: int
    root_entries: int
    total_sectors: int
    fat_sectors: int
    root_cluster: int  # FAT32; 0 on FAT16
    volume_id: int
    label: str

    @property
    def cluster_size(self) -> int:
        return self.bytes_per_sector * self.sectors_per_cluster

    @property
    def fat_offset(self) -> int:
        return self.reserved_sectors * self.bytes_per_sector

    @property
    def root_dir_offset(self) -> int:  # FAT16: the fixed root directory region
        return self.fat_offset + self.fat_count * self.fat_sectors * self.bytes_per_sector

    @property
    def root_dir_sectors(self) -> int:
        return (self.root_entries * DIR_ENTRY.size + self.bytes_per_sector - 1) // self.bytes_per_sector

    @property
    def data_offset(self) -> int:
        return self.root_dir_offset + self.root_dir_sectors * self.bytes_per_sector

    @property
    def cluster_count(self) -> int:
        data_sectors = self.total_sectors - self.data_offset // self.bytes_per_sector
        return max(0, data_sectors) // self.sectors_per_cluster

    @classmethod
    def parse(cls, sector: bytes, volume_size: int, name: str = "") -> "BootSector":
        def bad(message: str, field: str, offset: int, expected, found) -> FatBootSectorError:
            return FatBootSectorError(f"FAT boot sector: {message}", path=name or None, offset=offset, field=field,
                                      expected=expected, found=found)

        if len(sector) < 512:
            raise bad("truncated", "boot sector", 0, 512, len(sector))
        if sector[BOOT_SIGNATURE_OFFSET:BOOT_SIGNATURE_OFFSET + 2] != BOOT_SIGNATURE:
            raise bad("no 55 AA signature", "Signature", BOOT_SIGNATURE_OFFSET, BOOT_SIGNATURE.hex(),
                      sector[BOOT_SIGNATURE_OFFSET:BOOT_SIGNATURE_OFFSET + 2].hex())
        (_jmp, _oem, bps, spc, rsvd, nfats, root_ent, tot16, _media, fatsz16, _spt, _heads, _hidden,
         tot32) = BPB.unpack_from(sector, 0)
        if bps not in (512, 1024, 2048, 4096):
            raise bad("bytes per sector must be 512, 1024, 2048 or 4096", "BPB_BytsPerSec", 11, "512..4096", bps)
        if spc == 0 or spc & (spc - 1) or spc > 128:
            raise bad("sectors per cluster must be a power of two up to 128", "BPB_SecPerClus", 13, "1..128", spc)
        if rsvd == 0:
            raise bad("no reserved sectors", "BPB_RsvdSecCnt", 14, ">= 1", rsvd)
        if nfats == 0:
            raise bad("no FAT", "BPB_NumFATs", 16, ">= 1", nfats)
        total = tot16 or tot32
        if total == 0:
            raise bad("no sectors", "BPB_TotSec32", 32, "> 0", 0)
        if total * bps > volume_size:
            raise bad("the volume is larger than its partition", "BPB_TotSec32", 32, f"<= {volume_size // bps}", total)
        if fatsz16:
            fat_sectors, root_cluster, volume_id, label = fatsz16, 0, *BPB16.unpack_from(sector, BPB16_OFFSET)[3:5]
        else:
            fat_sectors, _ext, _ver, root_cluster, _fsinfo, _bk, _r, _drv, _r1, _sig, volume_id, label, _t = \
                BPB32.unpack_from(sector, BPB32_OFFSET)
            if root_ent != 0:
                raise bad("FAT32 has no fixed root directory", "BPB_RootEntCnt", 17, 0, root_ent)
        if fat_sectors == 0:
            raise bad("FAT size is zero", "BPB_FATSz32", 36, "> 0", 0)
        boot = cls("", bps, spc, rsvd, nfats, root_ent, total, fat_sectors, root_cluster, volume_id,
                   label.decode("latin-1").strip())
        if boot.data_offset >= total * bps:
            raise bad("reserved sectors, FATs and root directory fill the whole volume", "BPB_FATSz32", 36,
                      f"< {total * bps}", boot.data_offset)
        clusters = boot.cluster_count
        kind = "fat12" if clusters < FAT12_MAX_CLUSTERS else "fat16" if clusters < FAT16_MAX_CLUSTERS else "fat32"
        if kind == "fat12":
            raise Unsupported(f"FAT12 volume ({clusters} clusters): offline-fix reads FAT16 and FAT32 only",
                              path=name or None)
        if (kind == "fat32") != (fatsz16 == 0):
            raise bad(f"{clusters} clusters make a {kind.upper()} volume, but the BPB is laid out for "
                      f"{'FAT16' if fatsz16 else 'FAT32'}", "BPB_FATSz16", 22, kind, fatsz16)
        entry_bytes = 4 if kind == "fat32" else 2
        if fat_sectors * bps < (clusters + FIRST_DATA_CLUSTER) * entry_bytes:
            raise bad("the FAT is too small for the clusters", "BPB_FATSz32", 36,
                      f">= {(clusters + 2) * entry_bytes} bytes", fat_sectors * bps)
        if kind == "fat32" and not FIRST_DATA_CLUSTER <= root_cluster < clusters + FIRST_DATA_CLUSTER:
            raise bad("root directory cluster outside the volume", "BPB_RootClus", 44,
                      f"2..{clusters + 1}", root_cluster)
        return cls(kind, bps, spc, rsvd, nfats, root_ent, total, fat_sectors, root_cluster, volume_id,
                   "" if boot.label == "NO NAME" else boot.label)


@dataclass(frozen=True)
class DirEntry:
    name: str  # the long name when there is a valid one, else the 8.3 name
    short_name: str
    attributes: int
    first_cluster: int
    size: int
    mtime: datetime | None
    offset: int  # of the 32-byte short entry in the volume

    @property
    def is_dir(self) -> bool:
        return bool(self.attributes & ATTR_DIRECTORY)

    def to_entry(self) -> Entry:
        return Entry(self.name, self.is_dir, 0 if self.is_dir else self.size, self.mtime)


def short_name_checksum(raw11: bytes) -> int:
    """fatgen103 section 7: the checksum a long name carries of its short entry's 11 bytes."""
    total = 0
    for b in raw11:
        total = (((total & 1) << 7) + (total >> 1) + b) & 0xFF
    return total


def _short_name(raw11: bytes, ntres: int) -> str:
    raw = bytes([FREE_ENTRY]) + raw11[1:] if raw11[0] == KANJI_E5 else raw11
    base = raw[:8].decode("latin-1").rstrip(" ")
    ext = raw[8:].decode("latin-1").rstrip(" ")
    if ntres & NTRES_LOWER_BASE:
        base = base.lower()
    if ntres & NTRES_LOWER_EXT:
        ext = ext.lower()
    return f"{base}.{ext}" if ext else base


def _fat_time(date: int, time: int) -> datetime | None:
    """fatgen103 section 6.1: date = years since 1980 (7 bits), month, day; time = hours,
    minutes, seconds / 2. Local time on Windows; reported as if UTC. Invalid: None."""
    if date == 0:
        return None
    try:
        return datetime(1980 + (date >> 9), (date >> 5) & 0x0F, date & 0x1F, time >> 11, (time >> 5) & 0x3F,
                        min(59, (time & 0x1F) * 2), tzinfo=timezone.utc)
    except ValueError:
        return None


class FatFS(FileSystem):
    """A FAT16/FAT32 volume, read through ``read(offset, length)`` (volume-relative, exact).

    Paths as for every FileSystem: "\\"-separated, case-insensitive (long and 8.3 names).
    """

    kind = "fat"

    def __init__(self, read: Callable[[int, int], bytes], size: int, *, name: str = "") -> None:
        self._raw_read = read
        self.size = size
        self.name = name
        self.boot = BootSector.parse(self._read(0, 512, "boot sector"), size, name)
        self.kind = self.boot.fat_type
        self.label = self.boot.label
        self._fat_cache: dict[int, bytes] = {}
        self._dir_cache: dict[int, list[DirEntry]] = {}

    # -- the one reader ------------------------------------------------------------------------------
    def _read(self, offset: int, length: int, field: str) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise FatError(f"FAT volume {self.name}: {field} lies outside the volume", offset=offset, field=field,
                           expected=f"end <= {self.size}", found=offset + length)
        data = self._raw_read(offset, length)
        if len(data) != length:
            raise FatError(f"FAT volume {self.name}: short read of {field}", offset=offset, field=field,
                           expected=length, found=len(data))
        return data

    # -- FAT and cluster chains ----------------------------------------------------------------------
    def fat_entry(self, cluster: int) -> int:
        """The value of the first FAT's entry for ``cluster`` (FAT32: the low 28 bits)."""
        boot = self.boot
        width = 4 if boot.fat_type == "fat32" else 2
        at = cluster * width
        sector = at // boot.bytes_per_sector
        data = self._fat_cache.get(sector)
        if data is None:
            data = self._read(boot.fat_offset + sector * boot.bytes_per_sector, boot.bytes_per_sector, "FAT sector")
            if len(self._fat_cache) > 4096:
                self._fat_cache.clear()
            self._fat_cache[sector] = data
        inner = at % boot.bytes_per_sector
        if width == 4:
            return struct.unpack_from("<I", data, inner)[0] & FAT32_MASK
        return struct.unpack_from("<H", data, inner)[0]

    def _is_end(self, value: int) -> bool:
        return value >= (FAT32_EOC if self.boot.fat_type == "fat32" else FAT16_EOC)

    def chain(self, first: int, *, what: str, max_clusters: int | None = None) -> list[int]:
        """The clusters of a chain, checked: every cluster inside the volume, no loop, no free or
        bad cluster, an end-of-chain mark, at most ``max_clusters``."""
        boot = self.boot
        last_cluster = boot.cluster_count + FIRST_DATA_CLUSTER - 1
        limit = boot.cluster_count if max_clusters is None else min(max_clusters, boot.cluster_count)
        bad_mark = FAT32_BAD if boot.fat_type == "fat32" else FAT16_BAD
        clusters: list[int] = []
        seen: set[int] = set()
        cluster = first
        while True:
            if not FIRST_DATA_CLUSTER <= cluster <= last_cluster:
                raise FatChainError(f"{what}: cluster chain leaves the volume", path=self.name or None,
                                    field="cluster", expected=f"2..{last_cluster}", found=cluster)
            if cluster in seen:
                raise FatChainError(f"{what}: cluster chain loops back to cluster {cluster}", path=self.name or None,
                                    field="cluster")
            if len(clusters) >= limit:
                raise FatChainError(f"{what}: cluster chain longer than its size allows", path=self.name or None,
                                    field="cluster chain", expected=f"<= {limit} clusters", found=f"> {limit}")
            seen.add(cluster)
            clusters.append(cluster)
            value = self.fat_entry(cluster)
            if self._is_end(value):
                return clusters
            if value == 0:
                raise FatChainError(f"{what}: cluster {cluster} points at a free cluster", path=self.name or None,
                                    field="FAT entry", expected="a cluster or end of chain", found=value)
            if value == bad_mark:
                raise FatChainError(f"{what}: cluster {cluster} points at a bad cluster", path=self.name or None,
                                    field="FAT entry", expected="a cluster or end of chain", found=hex(value))
            cluster = value

    def cluster_offset(self, cluster: int) -> int:
        return self.boot.data_offset + (cluster - FIRST_DATA_CLUSTER) * self.boot.cluster_size

    def _runs(self, clusters: list[int], length: int) -> list[tuple[int, int, int]]:
        """(file offset, length, volume offset) of ``length`` bytes over the clusters, contiguous
        clusters merged."""
        size = self.boot.cluster_size
        runs: list[tuple[int, int, int]] = []
        done = 0
        for cluster in clusters:
            if done >= length:
                break
            piece = min(size, length - done)
            at = self.cluster_offset(cluster)
            if runs and runs[-1][2] + runs[-1][1] == at:
                f, n, v = runs[-1]
                runs[-1] = (f, n + piece, v)
            else:
                runs.append((done, piece, at))
            done += piece
        return runs

    # -- directories ---------------------------------------------------------------------------------
    def _dir_region(self, first_cluster: int) -> list[tuple[int, int]]:
        """(volume offset, length) pieces of a directory: FAT16's fixed root, or a cluster chain."""
        boot = self.boot
        if first_cluster == 0:
            if boot.fat_type == "fat32":
                first_cluster = boot.root_cluster
            else:
                return [(boot.root_dir_offset, boot.root_entries * DIR_ENTRY.size)]
        max_clusters = max(1, MAX_DIR_ENTRIES * DIR_ENTRY.size // boot.cluster_size)
        clusters = self.chain(first_cluster, what=f"directory at cluster {first_cluster}", max_clusters=max_clusters)
        return [(at, n) for _, n, at in self._runs(clusters, len(clusters) * boot.cluster_size)]

    def _directory(self, first_cluster: int) -> list[DirEntry]:
        cached = self._dir_cache.get(first_cluster)
        if cached is not None:
            return cached
        entries: list[DirEntry] = []
        pending: list[tuple[int, int, str]] = []  # (order, checksum, text) of long-name pieces
        for region_offset, region_len in self._dir_region(first_cluster):
            data = self._read(region_offset, region_len, "directory")
            for pos in range(0, len(data) - DIR_ENTRY.size + 1, DIR_ENTRY.size):
                first = data[pos]
                if first == END_OF_DIRECTORY:
                    self._dir_cache[first_cluster] = entries
                    return entries
                if first == FREE_ENTRY:
                    pending = []
                    continue
                attr = data[pos + 11]
                if attr & ATTR_LONG_NAME_MASK == ATTR_LONG_NAME:
                    pending = self._long_piece(data, pos, pending)
                    continue
                entry = self._short_entry(data, pos, region_offset + pos, pending)
                pending = []
                if entry is not None:
                    entries.append(entry)
        self._dir_cache[first_cluster] = entries
        return entries

    @staticmethod
    def _long_piece(data: bytes, pos: int, pending: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
        order, name1, _attr, _type, checksum, name2, _clus, name3 = LDIR_ENTRY.unpack_from(data, pos)
        seq = order & 0x3F
        text = (name1 + name2 + name3).decode("utf-16-le", "replace")
        if order & LAST_LONG_ENTRY:
            pending = []  # a new long name starts (a dangling earlier one is dropped)
        elif not pending or pending[-1][0] != seq + 1 or pending[-1][1] != checksum:
            return []  # out of sequence: not part of a valid long name
        if not 1 <= seq <= MAX_LONG_NAME_ENTRIES:
            return []
        return pending + [(seq, checksum, text)]

    def _short_entry(self, data: bytes, pos: int, offset: int, pending: list[tuple[int, int, str]]) -> DirEntry | None:
        (raw_name, attr, ntres, _tenth, _ctime, _cdate, _adate, clus_hi, wtime, wdate, clus_lo,
         size) = DIR_ENTRY.unpack_from(data, pos)
        if attr & ATTR_VOLUME_ID:
            return None  # the volume label
        short = _short_name(raw_name, ntres)
        if short in (".", ".."):
            return None
        name = short
        if pending and pending[-1][0] == 1 and pending[-1][1] == short_name_checksum(raw_name):
            text = "".join(piece for _, _, piece in reversed(pending))
            end = text.find("\x00")
            long_name = text if end < 0 else text[:end]
            if long_name and "/" not in long_name and "\\" not in long_name:
                name = long_name
        first_cluster = (clus_hi << 16 | clus_lo) if self.boot.fat_type == "fat32" else clus_lo
        return DirEntry(name, short, attr, first_cluster, size, _fat_time(wdate, wtime), offset)

    def _lookup(self, path: str) -> tuple[list[str], DirEntry | None]:
        """(real-casing parts, entry); entry None for the root."""
        parts = split_path(path)
        current: DirEntry | None = None
        walked: list[str] = []
        for part in parts:
            here = "\\".join(walked)
            if current is not None and not current.is_dir:
                raise NotFound(f"not found: {path} ({here} is a file)")
            folder = 0 if current is None else current.first_cluster
            if current is not None and folder == 0:  # would alias the root directory
                raise FatDirectoryError(f"{here}: directory entry has no first cluster", offset=current.offset,
                                        field="DIR_FstClusLO", expected=">= 2", found=0)
            wanted = part.casefold()
            match = None
            for entry in self._directory(folder):
                if entry.name.casefold() == wanted or entry.short_name.casefold() == wanted:
                    match = entry
                    break
            if match is None:
                raise NotFound(f"not found: {path}")
            current = match
            walked.append(match.name)
        return walked, current

    # -- FileSystem ------------------------------------------------------------------------------------
    def resolve(self, path: str) -> str:
        return "\\".join(self._lookup(path)[0])

    def stat(self, path: str) -> Entry:
        walked, entry = self._lookup(path)
        if entry is None:
            return Entry("", True, 0)
        return entry.to_entry()

    def listdir(self, path: str) -> list[Entry]:
        _, entry = self._lookup(path)
        if entry is not None and not entry.is_dir:
            raise NotFound(f"no such folder: {path}")
        folder = 0 if entry is None else entry.first_cluster
        out = {e.name.casefold(): e.to_entry() for e in self._directory(folder)}
        return sorted(out.values(), key=lambda e: e.name.casefold())

    def extents(self, path: str) -> tuple[int, list[tuple[int, int, int]]]:
        """(file size, [(file offset, length, volume offset)]) of a file's bytes: its cluster chain,
        checked against its size (exactly ceil(size / cluster size) clusters)."""
        _, entry = self._lookup(path)
        if entry is None or entry.is_dir:
            raise NotFound(f"{path} is a folder, not a file")
        if entry.size == 0:
            return 0, []
        need = -(-entry.size // self.boot.cluster_size)
        clusters = self.chain(entry.first_cluster, what=path, max_clusters=need)
        if len(clusters) != need:
            raise FatChainError(f"{path}: cluster chain too short for the file size", path=self.name or None,
                                offset=entry.offset,
                                field="DIR_FileSize", expected=f"{need} clusters", found=len(clusters))
        return entry.size, self._runs(clusters, entry.size)

    def open(self, path: str) -> BinaryIO:
        size, runs = self.extents(path)
        return io.BufferedReader(_FatFile(self, path, size, runs), buffer_size=65536)


class _FatFile(ReadOnlyStream):
    """A file's bytes over its runs; reads stop at the file size."""

    def __init__(self, fs: FatFS, path: str, size: int, runs: list[tuple[int, int, int]]) -> None:
        self.fs, self.path, self.size, self.runs, self.pos = fs, path, size, runs, 0

    def readinto(self, buf) -> int:
        want = min(len(buf), max(0, self.size - self.pos))
        done = 0
        for file_off, length, vol_off in self.runs:
            if done >= want:
                break
            at = self.pos + done
            if not file_off <= at < file_off + length:
                continue
            n = min(want - done, file_off + length - at)
            buf[done:done + n] = self.fs._read(vol_off + (at - file_off), n, f"data of {self.path}")
            done += n
        self.pos += done
        return done
