"""REGF cell layouts, declared once. Behaviour lives in reader.py, writer.py and log.py.

Specification: Maxim Suhanov, "Windows registry file format specification",
https://github.com/msuhanov/regf/blob/master/Windows%20registry%20file%20format%20specification.md
Microsoft names in brackets where known (CM_KEY_NODE, CM_KEY_VALUE, CM_KEY_INDEX, CM_BIG_DATA,
CM_KEY_SECURITY, HBIN). All offsets inside the hive bins data are relative to its start, which is
file offset 4096 (baseblock.HBIN_START). Every number is little-endian.
"""

from __future__ import annotations

import struct

# -- hive bin [HBIN] ------------------------------------------------------------------------------
HBIN_SIGNATURE = b"hbin"
HBIN_HEADER = struct.Struct(
    "<"
    "4s"  # 0  Signature "hbin"
    "I"  # 4  FileOffset: this bin's offset relative to the hive bins data
    "I"  # 8  Size: multiple of 4096
    "8s"  # 12 Reserved
    "Q"  # 20 TimeStamp (first bin only: backup of the base block's)
    "I"  # 28 Spare
)
assert HBIN_HEADER.size == 32
HBIN_ALIGN = 4096

# -- cell -----------------------------------------------------------------------------------------
CELL_SIZE = struct.Struct("<i")  # 0 Size: negative when allocated, includes these 4 bytes
CELL_ALIGN = 8
CELL_HEADER_SIZE = 4
NO_CELL = 0xFFFFFFFF  # HCELL_NIL

# -- key node [CM_KEY_NODE], signature "nk" -------------------------------------------------------
NK_SIGNATURE = b"nk"
KEY_NODE = struct.Struct(
    "<"
    "2s"  # 0  Signature "nk"
    "H"  # 2  Flags
    "Q"  # 4  LastWriteTime (FILETIME)
    "I"  # 12 AccessBits / Spare
    "I"  # 16 Parent
    "I"  # 20 SubKeyCounts[Stable]
    "I"  # 24 SubKeyCounts[Volatile]
    "I"  # 28 SubKeyLists[Stable]
    "I"  # 32 SubKeyLists[Volatile]
    "I"  # 36 ValueList.Count
    "I"  # 40 ValueList.List
    "I"  # 44 Security
    "I"  # 48 Class
    "I"  # 52 MaxNameLen (low 16 bits) | VirtControlFlags (4) | UserFlags (4) | Debug (8)
    "I"  # 56 MaxClassLen
    "I"  # 60 MaxValueNameLen
    "I"  # 64 MaxValueDataLen
    "I"  # 68 WorkVar
    "H"  # 72 NameLength
    "H"  # 74 ClassLength
)
assert KEY_NODE.size == 76
NK_OFF_FLAGS = 2
NK_OFF_LAST_WRITE = 4
NK_OFF_PARENT = 16
NK_OFF_SUBKEY_COUNT = 20
NK_OFF_SUBKEY_LIST = 28
NK_OFF_VALUE_COUNT = 36
NK_OFF_VALUE_LIST = 40
NK_OFF_SECURITY = 44
NK_OFF_CLASS = 48
NK_OFF_MAX_NAME = 52
NK_OFF_MAX_CLASS = 56
NK_OFF_MAX_VALUE_NAME = 60
NK_OFF_MAX_VALUE_DATA = 64
NK_OFF_NAME_LENGTH = 72
NK_OFF_CLASS_LENGTH = 74
NK_OFF_NAME = 76

KEY_VOLATILE = 0x0001
KEY_HIVE_EXIT = 0x0002
KEY_HIVE_ENTRY = 0x0004  # the root key
KEY_NO_DELETE = 0x0008
KEY_SYM_LINK = 0x0010
KEY_COMP_NAME = 0x0020  # name stored as Latin-1 ("ASCII"), else UTF-16LE
KEY_PREDEF_HANDLE = 0x0040

# -- key value [CM_KEY_VALUE], signature "vk" -----------------------------------------------------
VK_SIGNATURE = b"vk"
KEY_VALUE = struct.Struct(
    "<"
    "2s"  # 0  Signature "vk"
    "H"  # 2  NameLength (0: the default value)
    "I"  # 4  DataLength (bit 31 set: data lives in the DataOffset field, at most 4 bytes)
    "I"  # 8  Data (cell offset, or the data itself)
    "I"  # 12 Type
    "H"  # 16 Flags
    "H"  # 18 Spare
)
assert KEY_VALUE.size == 20
VK_OFF_DATA_LENGTH = 4
VK_OFF_DATA = 8
VK_OFF_TYPE = 12
VK_OFF_FLAGS = 16
VK_OFF_NAME = 20
VALUE_COMP_NAME = 0x0001
DATA_INLINE = 0x80000000  # CM_KEY_VALUE_SPECIAL_SIZE
BIG_DATA_THRESHOLD = 16344  # CM_KEY_VALUE_BIG: larger data uses a "db" record (minor version > 3)
BIG_DATA_SEGMENT = 16344

# -- subkey lists [CM_KEY_INDEX] ------------------------------------------------------------------
LIST_HEADER = struct.Struct("<2sH")  # 0 Signature, 2 Count
assert LIST_HEADER.size == 4
LI_SIGNATURE = b"li"  # elements: u32 key node offset
LF_SIGNATURE = b"lf"  # elements: u32 offset, 4-byte name hint
LH_SIGNATURE = b"lh"  # elements: u32 offset, u32 hash of the uppercased name
RI_SIGNATURE = b"ri"  # elements: u32 offset of an li/lf/lh list
LEAF_SIGNATURES = (LI_SIGNATURE, LF_SIGNATURE, LH_SIGNATURE)
# Windows splits a leaf into an index root when it would exceed this many elements (CM_MAX_INDEX);
# the exact figure Windows uses for lf/lh is 1012 elements per leaf.
MAX_LEAF_ELEMENTS = 1012

# -- big data [CM_BIG_DATA], signature "db" -------------------------------------------------------
DB_SIGNATURE = b"db"
BIG_DATA = struct.Struct("<2sHI")  # 0 Signature, 2 Count (segments), 4 List (offset of segment list)
assert BIG_DATA.size == 8

# -- key security [CM_KEY_SECURITY], signature "sk" -----------------------------------------------
SK_SIGNATURE = b"sk"
KEY_SECURITY = struct.Struct(
    "<"
    "2s"  # 0  Signature "sk"
    "H"  # 2  Reserved
    "I"  # 4  Flink
    "I"  # 8  Blink
    "I"  # 12 ReferenceCount
    "I"  # 16 DescriptorLength
)
assert KEY_SECURITY.size == 20

# -- value types ----------------------------------------------------------------------------------
REG_NONE = 0
REG_SZ = 1
REG_EXPAND_SZ = 2
REG_BINARY = 3
REG_DWORD = 4
REG_DWORD_BIG_ENDIAN = 5
REG_LINK = 6
REG_MULTI_SZ = 7
REG_RESOURCE_LIST = 8
REG_FULL_RESOURCE_DESCRIPTOR = 9
REG_RESOURCE_REQUIREMENTS_LIST = 10
REG_QWORD = 11

TYPE_NAMES = {
    REG_NONE: "REG_NONE",
    REG_SZ: "REG_SZ",
    REG_EXPAND_SZ: "REG_EXPAND_SZ",
    REG_BINARY: "REG_BINARY",
    REG_DWORD: "REG_DWORD",
    REG_DWORD_BIG_ENDIAN: "REG_DWORD_BIG_ENDIAN",
    REG_LINK: "REG_LINK",
    REG_MULTI_SZ: "REG_MULTI_SZ",
    REG_RESOURCE_LIST: "REG_RESOURCE_LIST",
    REG_FULL_RESOURCE_DESCRIPTOR: "REG_FULL_RESOURCE_DESCRIPTOR",
    REG_RESOURCE_REQUIREMENTS_LIST: "REG_RESOURCE_REQUIREMENTS_LIST",
    REG_QWORD: "REG_QWORD",
}
TYPES_BY_NAME = {name: code for code, name in TYPE_NAMES.items()}


def type_name(code: int) -> str:
    return TYPE_NAMES.get(code, f"REG_UNKNOWN_{code:#x}")


# -- transaction logs ("Format of transaction log files") ------------------------------------------
# Both formats start with a partial copy of the base block (baseblock.py) in their first sector
# (Clustering factor * 512 bytes), with File type 1 (old format) or 6 (new format).
LOG_SECTOR = 512

# Old format (Windows 8 and earlier): dirty vector at the second sector, then 512-byte dirty pages.
DIRT_SIGNATURE = b"DIRT"  # 0 Signature; 4 Bitmap: one bit per 512-byte page of the hive bins data
DIRTY_PAGE_SIZE = 512

# New format (Windows 8.1 and later): log entries [HvLE] from the second sector, 512-byte aligned.
HVLE_SIGNATURE = b"HvLE"
LOG_ENTRY = struct.Struct(
    "<"
    "4s"  # 0  Signature "HvLE"
    "I"  # 4  Size of this log entry (a multiple of 512)
    "I"  # 8  Flags: copy of the base block's Flags when the entry was made
    "I"  # 12 SequenceNumber: written to both sequence numbers when the entry is applied
    "I"  # 16 HiveBinsDataSize: copy of the base block's field when the entry was made
    "I"  # 20 DirtyPagesCount
    "8s"  # 24 Hash1: Marvin32 of bytes 40..Size (page references and pages)
    "8s"  # 32 Hash2: Marvin32 of bytes 0..32 (this header up to and including Hash1)
)
assert LOG_ENTRY.size == 40
LOG_ENTRY_HASH1_COVERS = 40  # Hash1 covers the entry from this offset to its end
LOG_ENTRY_HASH2_COVERS = 32  # Hash2 covers the entry's first 32 bytes
DIRTY_PAGE_REF = struct.Struct("<II")  # 0 Offset (relative to the hive bins data), 4 Size
assert DIRTY_PAGE_REF.size == 8
