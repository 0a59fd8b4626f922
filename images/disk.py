"""Disk-level pieces of the builder: external tools, partition tables (sfdisk), sparse splicing,
FAT32 (mkfs.fat + mtools), fake BitLocker volumes, qemu-img conversion and checks.

Partition type GUIDs: UEFI 2.10 (ESP) and Microsoft's "Windows and GPT FAQ"
(https://learn.microsoft.com/windows-hardware/manufacture/desktop/windows-and-gpt-faq).
BitLocker volume header: "Detecting BitLocker" (Microsoft SI team blog) and libyal/libbde,
documentation/BitLocker Drive Encryption (BDE) format.asciidoc, "Volume header".
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import struct
import subprocess
import uuid
from pathlib import Path
from typing import Iterable, Sequence

from offline_fix.errors import Unsupported, VerificationFailed

MIB = 1 << 20
SECTOR = 512

GPT_ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
GPT_MSR = "E3C9E316-0B5C-4DB8-817D-F92DF00215AE"
GPT_BASIC_DATA = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
MBR_NTFS = 0x07  # IFS: NTFS, exFAT, and BitLocker volumes alike

# Windows 7+ BitLocker volume header (first sector of the volume); offsets from the spec above.
FVE_SIGNATURE = b"-FVE-FS-"  # 0x003
FVE_JUMP = b"\xeb\x58\x90"  # 0x000
FVE_GUID = uuid.UUID("4967d63b-2e29-4ad8-8399-f6a339e3d001")  # 0x0A0, stored little-endian
FVE_BPB = struct.Struct("<HBHBHHBHHHII")  # 0x00B: BIOS parameter block up to large_sectors
FVE_METADATA_OFFSETS = struct.Struct("<QQQ")  # 0x0B0: three FVE metadata block offsets
assert FVE_BPB.size == 0x24 - 0x0B and FVE_METADATA_OFFSETS.size == 24

# NTFS boot sector (include/ntfs-3g/layout.h NTFS_BOOT_SECTOR)
NTFS_OEM = b"NTFS    "  # 0x003
NTFS_NUMBER_OF_SECTORS = struct.Struct("<q")  # 0x028
NTFS_SERIAL = struct.Struct("<Q")  # 0x048 volume_serial_number
NTFS_NUMBER_OF_SECTORS_OFFSET = 0x28
NTFS_SERIAL_OFFSET = 0x48


class ToolMissing(Unsupported):
    """A program the builder needs is not installed."""


class ToolFailed(VerificationFailed):
    """A program the builder ran failed, or an output check disagreed."""


TOOLS_PACKAGES = {
    "mkntfs": "ntfs-3g",
    "sfdisk": "fdisk",
    "qemu-img": "qemu-utils",
    "mkfs.fat": "dosfstools",
    "mmd": "mtools",
    "mcopy": "mtools",
}


def run(args: Sequence[str], *, input: bytes | None = None, env: dict | None = None) -> bytes:
    """Run a program; return stdout; raise ToolMissing/ToolFailed with its last stderr line."""
    exe = shutil.which(args[0]) or (f"/usr/sbin/{args[0]}" if os.path.exists(f"/usr/sbin/{args[0]}") else None)
    if exe is None:
        package = TOOLS_PACKAGES.get(args[0], "?")
        raise ToolMissing(f"{args[0]} is not installed (Debian package {package})", field=args[0])
    full_env = None
    if env:
        full_env = dict(os.environ)
        full_env.update(env)
    try:
        proc = subprocess.run(
            [exe, *args[1:]], input=input, capture_output=True, env=full_env, timeout=600, check=False
        )
    except subprocess.TimeoutExpired:
        raise ToolFailed(f"{args[0]} did not finish in 600 s", field=args[0]) from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.decode(errors="replace").splitlines() if ln.strip()]
        last = lines[-1] if lines else "(no message)"
        raise ToolFailed(f"{args[0]} failed (exit {proc.returncode}): {last}", field=" ".join(args[:2]))
    return proc.stdout


def derived_uuid(seed: int, role: str) -> str:
    """A fixed, random-looking version-4 GUID for ROLE under SEED."""
    digest = hashlib.sha256(f"offline-fix images {seed} {role}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4)).upper()


def derived_u32(seed: int, role: str) -> int:
    return int.from_bytes(hashlib.sha256(f"offline-fix images {seed} {role}".encode()).digest()[:4], "little") or 1


def derived_u64(seed: int, role: str) -> int:
    return int.from_bytes(hashlib.sha256(f"offline-fix images {seed} {role}".encode()).digest()[:8], "little")


# --------------------------------------------------------------------------------------------
# Files


def make_sparse(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        f.truncate(size)


def data_extents(fd: int, size: int) -> Iterable[tuple[int, int]]:
    """(start, end) of the data regions of a file (SEEK_DATA/SEEK_HOLE; whole file otherwise)."""
    pos = 0
    try:
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no data after pos
                    return
                raise
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            if end <= start:  # never loop in place
                end = size
            yield start, end
            pos = end
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP) and pos == 0:
            yield 0, size
            return
        raise


def splice(src: Path, dst_fd: int, offset: int, *, chunk: int = MIB) -> None:
    """Copy SRC into the open file DST_FD at OFFSET, leaving holes (and all-zero blocks) unwritten."""
    size = src.stat().st_size
    zero = bytes(chunk)
    with open(src, "rb") as f:
        fd = f.fileno()
        for start, end in data_extents(fd, size):
            pos = start
            while pos < end:
                n = min(chunk, end - pos)
                block = os.pread(fd, n, pos)
                if len(block) != n:
                    raise ToolFailed("short read while splicing a volume", path=str(src), offset=pos, expected=n, found=len(block))
                if block != zero[:n]:
                    os.pwrite(dst_fd, block, offset + pos)
                pos += n


def sparse_copy(src: Path, dst: Path) -> None:
    """Copy SRC to DST keeping it sparse."""
    size = src.stat().st_size
    make_sparse(dst, size)
    fd = os.open(dst, os.O_WRONLY)
    try:
        splice(src, fd, 0)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------
# Partition tables


def write_partition_table(image: Path, layout: str, partitions: list[dict], *, label_id: str) -> None:
    """Write a GPT or MBR with sfdisk. PARTITIONS: dicts with start/size (sectors), type,
    name (GPT), uuid (GPT), bootable (MBR)."""
    lines = [f"label: {'gpt' if layout == 'gpt' else 'dos'}", f"label-id: {label_id}", "unit: sectors", "sector-size: 512"]
    if layout == "gpt":
        lines.append("first-lba: 34")
    for p in partitions:
        fields = [f"start={p['start']}", f"size={p['size']}", f"type={p['type']}"]
        if layout == "gpt":
            fields += [f"uuid={p['uuid']}", f'name="{p["name"]}"']
        elif p.get("bootable"):
            fields.append("bootable")
        lines.append(", ".join(fields))
    script = ("\n".join(lines) + "\n").encode()
    run(["sfdisk", "--no-reread", "--no-tell-kernel", "--wipe", "never", "--wipe-partitions", "never", "-q", str(image)], input=script)


def read_partition_table(image: Path) -> dict:
    """sfdisk --json of a raw image (used by checks and tests)."""
    return json.loads(run(["sfdisk", "--json", str(image)]))


# --------------------------------------------------------------------------------------------
# Volumes other than NTFS


def make_fat32(volume: Path, size: int, *, hidden_sectors: int, label: str = "SYSTEM") -> None:
    """FAT32 with mkfs.fat --invariant (fixed volume ID 1234-ABCD and times)."""
    make_sparse(volume, size)
    run(["mkfs.fat", "-F", "32", "-S", "512", "-s", "1", "-h", str(hidden_sectors), "-n", label, "--invariant", str(volume)])


def fat_put(volume: Path, files: list[tuple[str, Path]]) -> None:
    """Copy host files into the FAT volume at Windows paths (folders made as needed)."""
    env = {"MTOOLS_SKIP_CHECK": "1", "MTOOLS_NO_VFAT": "0"}
    made: set[str] = set()
    for winpath, host in files:
        parts = [p for p in winpath.replace("\\", "/").split("/") if p]
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d.upper() not in made:
                made.add(d.upper())
                try:
                    run(["mmd", "-i", str(volume), "::/" + d], env=env)
                except ToolFailed:
                    pass  # the folder exists already (mmd has no -p); mcopy below fails if not
        run(["mcopy", "-i", str(volume), "-m", "-o", str(host), "::/" + "/".join(parts)], env=env)


def make_fake_bitlocker(volume: Path, size: int, *, hidden_sectors: int, seed: int, random_bytes: int = MIB) -> None:
    """A volume whose first sector is a Windows 7+ BitLocker header; the first RANDOM_BYTES are
    otherwise random (stand-in for ciphertext), the rest left sparse."""
    n = min(random_bytes, size)
    body = bytearray(hashlib.shake_256(f"offline-fix fake bitlocker {seed}".encode()).digest(n))
    body[0:3] = FVE_JUMP
    body[3:11] = FVE_SIGNATURE
    body[0x0B : 0x0B + FVE_BPB.size] = FVE_BPB.pack(
        SECTOR,  # bytes per sector
        8,  # sectors per cluster
        0,  # reserved sectors
        0,  # FAT count
        0,  # root entries
        0,  # sectors (16-bit)
        0xF8,  # media descriptor
        0,  # sectors per FAT
        63,  # sectors per track
        255,  # heads
        hidden_sectors,
        0,  # large sectors
    )
    body[0xA0:0xB0] = FVE_GUID.bytes_le
    third = (size // 3) & ~0xFFFF
    body[0xB0 : 0xB0 + FVE_METADATA_OFFSETS.size] = FVE_METADATA_OFFSETS.pack(0x2000000 % max(third, 1), third, 2 * third)
    body[0x1FE:0x200] = b"\x55\xaa"
    make_sparse(volume, size)
    with open(volume, "r+b") as f:
        f.write(body)


def patch_ntfs_serial(volume: Path, serial: int) -> None:
    """Set the volume serial number in the NTFS boot sector and its backup (last sector)."""
    with open(volume, "r+b") as f:
        boot = f.read(SECTOR)
        if len(boot) != SECTOR or boot[3:11] != NTFS_OEM:
            raise ToolFailed("mkntfs left no NTFS boot sector", path=str(volume), field="oem_id", expected=NTFS_OEM, found=boot[3:11])
        (sectors,) = NTFS_NUMBER_OF_SECTORS.unpack_from(boot, NTFS_NUMBER_OF_SECTORS_OFFSET)
        backups = [0]
        if 0 < sectors and (sectors) * SECTOR + SECTOR <= volume.stat().st_size:
            f.seek(sectors * SECTOR)
            if f.read(SECTOR)[3:11] == NTFS_OEM:
                backups.append(sectors * SECTOR)
        for at in backups:
            f.seek(at + NTFS_SERIAL_OFFSET)
            f.write(NTFS_SERIAL.pack(serial))


# --------------------------------------------------------------------------------------------
# Container formats

QEMU_FORMATS = {
    # format: (qemu driver, -o options, name qemu-img info reports)
    "vhd-fixed": ("vpc", "subformat=fixed,force_size=on", "vpc"),
    "vhd-dynamic": ("vpc", "subformat=dynamic,force_size=on", "vpc"),
    "vhdx": ("vhdx", "subformat=dynamic", "vhdx"),
}


def convert(raw: Path, out: Path, fmt: str) -> None:
    driver, options, _ = QEMU_FORMATS[fmt]
    run(["qemu-img", "convert", "-q", "-f", "raw", "-O", driver, "-o", options, str(raw), str(out)])


def qemu_info(path: Path, fmt: str | None = None) -> dict:
    args = ["qemu-img", "info", "--output=json"]
    if fmt:
        args += ["-f", fmt]
    return json.loads(run(args + [str(path)]))


def check_container(path: Path, fmt: str, virtual_size: int) -> None:
    """qemu-img info (format, virtual size) and, for VHDX, qemu-img check."""
    expected = "raw" if fmt == "raw" else QEMU_FORMATS[fmt][2]
    info = qemu_info(path, expected)
    if info.get("format") != expected or info.get("virtual-size") != virtual_size:
        raise ToolFailed(
            "qemu-img reads the output differently than built",
            path=str(path),
            expected=(expected, virtual_size),
            found=(info.get("format"), info.get("virtual-size")),
        )
    if fmt == "vhdx":
        run(["qemu-img", "check", "-q", "-f", "vhdx", str(path)])
