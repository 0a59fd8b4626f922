"""What a partition holds, from its first sectors: NTFS, BitLocker, FAT, exFAT, ReFS, ext, ...

Boot-sector signatures: NTFS and BitLocker keep an 8-byte OEM id at offset 3 ("NTFS    ",
"-FVE-FS-"); FAT32 writes "FAT32   " at 82, FAT12/16 "FAT1x   " at 54; ext2/3/4 keep 0xEF53 at
1080; LUKS starts with "LUKS\\xba\\xbe"; swap ends its first page with "SWAPSPACE2".
"""

from __future__ import annotations

import struct

BITLOCKER_HELP = (
    "BitLocker-encrypted volume: it cannot be read until it is unlocked. On a Windows helper: "
    "`manage-bde -unlock X: -RecoveryPassword <48-digit key>` (Azure: the key is in the VM's Key "
    "Vault; Entra ID/AD: the computer object; the Microsoft account of the owner), then run "
    "offline-fix on the unlocked drive letter. On Linux: `dislocker -V DEVICE -p<recovery key> -- "
    "/mnt/dislocker` then point offline-fix at /mnt/dislocker/dislocker-file."
)


def detect_filesystem(head: bytes) -> str:
    """``head``: at least the first 4096 bytes of the volume (fewer only at the end of a disk)."""
    if len(head) < 512 or head[:512] == bytes(512):
        return "empty" if head[:512] == bytes(512) else "unknown"
    oem = head[3:11]
    if oem == b"NTFS    ":
        return "ntfs"
    if oem == b"-FVE-FS-":
        return "bitlocker"
    if oem == b"EXFAT   ":
        return "exfat"
    if head[3:7] == b"ReFS":
        return "refs"
    if head[82:87] == b"FAT32":
        return "fat32"
    if head[54:59] in (b"FAT16", b"FAT12"):
        return head[54:59].decode().lower()
    if head[:6] == b"LUKS\xba\xbe":
        return "luks"
    if len(head) >= 1082 and struct.unpack_from("<H", head, 1080)[0] == 0xEF53:
        return "ext"
    if head[:4] == b"XFSB":
        return "xfs"
    if len(head) >= 4096 and head[4086:4096] == b"SWAPSPACE2":
        return "swap"
    return "unknown"


def fat_label(head: bytes, fs: str) -> str:
    at = 71 if fs == "fat32" else 43
    label = head[at : at + 11].decode("latin-1", "replace").strip()
    return "" if label == "NO NAME" else label
