"""On-disk layouts of the PE/COFF structures Authenticode needs, declared once.

Names follow winnt.h / the PE format specification:
https://learn.microsoft.com/en-us/windows/win32/debug/pe-format
and the Authenticode PE specification (Authenticode_PE.docx, "Calculating the PE image hash"):
https://learn.microsoft.com/en-us/windows-hardware/drivers/install/authenticode
All integers are little-endian. Offsets in the comments are relative to the structure start.
Behaviour lives in pe.py; this module only declares and checks sizes at import.
"""

from __future__ import annotations

import struct
from collections import namedtuple


class Layout:
    """A fixed-size structure: ``(name, struct code)`` fields in order, unpacked to a namedtuple."""

    def __init__(self, name: str, fields: list[tuple[str, str]], size: int) -> None:
        self.name = name
        self.struct = struct.Struct("<" + "".join(code for _, code in fields))
        self.tuple = namedtuple(name, [field for field, _ in fields])  # type: ignore[misc]
        self.size = self.struct.size
        if self.size != size:  # guards this declaration, never input
            raise ImportError(f"{name} is {self.size} bytes, expected {size}")
        self.offsets: dict[str, int] = {}
        offset = 0
        for field, code in fields:
            self.offsets[field] = offset
            offset += struct.calcsize("<" + code)

    def unpack(self, data: bytes, offset: int = 0):
        return self.tuple._make(self.struct.unpack_from(data, offset))


IMAGE_DOS_SIGNATURE = b"MZ"
IMAGE_NT_SIGNATURE = b"PE\0\0"
IMAGE_NT_OPTIONAL_HDR32_MAGIC = 0x10B
IMAGE_NT_OPTIONAL_HDR64_MAGIC = 0x20B
IMAGE_DIRECTORY_ENTRY_SECURITY = 4  # the Certificate Table: its "VirtualAddress" is a FILE offset
IMAGE_NUMBEROF_DIRECTORY_ENTRIES = 16
WIN_CERT_REVISION_1_0 = 0x0100
WIN_CERT_REVISION_2_0 = 0x0200
WIN_CERT_TYPE_X509 = 0x0001
WIN_CERT_TYPE_PKCS_SIGNED_DATA = 0x0002
WIN_CERT_TYPE_TS_STACK_SIGNED = 0x0004

IMAGE_DOS_HEADER = Layout("IMAGE_DOS_HEADER", [
    ("e_magic", "2s"),      # 0x00 "MZ"
    ("e_cblp", "H"),        # 0x02
    ("e_cp", "H"),          # 0x04
    ("e_crlc", "H"),        # 0x06
    ("e_cparhdr", "H"),     # 0x08
    ("e_minalloc", "H"),    # 0x0A
    ("e_maxalloc", "H"),    # 0x0C
    ("e_ss", "H"),          # 0x0E
    ("e_sp", "H"),          # 0x10
    ("e_csum", "H"),        # 0x12
    ("e_ip", "H"),          # 0x14
    ("e_cs", "H"),          # 0x16
    ("e_lfarlc", "H"),      # 0x18
    ("e_ovno", "H"),        # 0x1A
    ("e_res", "8s"),        # 0x1C WORD[4]
    ("e_oemid", "H"),       # 0x24
    ("e_oeminfo", "H"),     # 0x26
    ("e_res2", "20s"),      # 0x28 WORD[10]
    ("e_lfanew", "I"),      # 0x3C file offset of the "PE\0\0" signature
], 64)

IMAGE_FILE_HEADER = Layout("IMAGE_FILE_HEADER", [
    ("Machine", "H"),               # 0x00
    ("NumberOfSections", "H"),      # 0x02
    ("TimeDateStamp", "I"),         # 0x04
    ("PointerToSymbolTable", "I"),  # 0x08
    ("NumberOfSymbols", "I"),       # 0x0C
    ("SizeOfOptionalHeader", "H"),  # 0x10
    ("Characteristics", "H"),       # 0x12
], 20)

# The fixed part of the optional header, up to (not including) the data directories.
# From SectionAlignment (0x20) to DllCharacteristics (0x46) PE32 and PE32+ agree.
_OPTIONAL_HEAD = [
    ("Magic", "H"),                        # 0x00 0x10B (PE32) or 0x20B (PE32+)
    ("MajorLinkerVersion", "B"),           # 0x02
    ("MinorLinkerVersion", "B"),           # 0x03
    ("SizeOfCode", "I"),                   # 0x04
    ("SizeOfInitializedData", "I"),        # 0x08
    ("SizeOfUninitializedData", "I"),      # 0x0C
    ("AddressOfEntryPoint", "I"),          # 0x10
    ("BaseOfCode", "I"),                   # 0x14
]
_OPTIONAL_MIDDLE = [
    ("SectionAlignment", "I"),             # 0x20
    ("FileAlignment", "I"),                # 0x24
    ("MajorOperatingSystemVersion", "H"),  # 0x28
    ("MinorOperatingSystemVersion", "H"),  # 0x2A
    ("MajorImageVersion", "H"),            # 0x2C
    ("MinorImageVersion", "H"),            # 0x2E
    ("MajorSubsystemVersion", "H"),        # 0x30
    ("MinorSubsystemVersion", "H"),        # 0x32
    ("Win32VersionValue", "I"),            # 0x34
    ("SizeOfImage", "I"),                  # 0x38
    ("SizeOfHeaders", "I"),                # 0x3C
    ("CheckSum", "I"),                     # 0x40 excluded from the Authenticode hash
    ("Subsystem", "H"),                    # 0x44
    ("DllCharacteristics", "H"),           # 0x46
]
_STACK_HEAP = ["SizeOfStackReserve", "SizeOfStackCommit", "SizeOfHeapReserve", "SizeOfHeapCommit"]
_OPTIONAL_TAIL = [("LoaderFlags", "I"), ("NumberOfRvaAndSizes", "I")]

IMAGE_OPTIONAL_HEADER32 = Layout(
    "IMAGE_OPTIONAL_HEADER32",
    _OPTIONAL_HEAD
    + [("BaseOfData", "I"), ("ImageBase", "I")]   # 0x18, 0x1C
    + _OPTIONAL_MIDDLE
    + [(name, "I") for name in _STACK_HEAP]       # 0x48 .. 0x57
    + _OPTIONAL_TAIL,                             # 0x58, 0x5C
    96)                                           # 0x60 data directories follow

IMAGE_OPTIONAL_HEADER64 = Layout(
    "IMAGE_OPTIONAL_HEADER64",
    _OPTIONAL_HEAD
    + [("ImageBase", "Q")]                        # 0x18
    + _OPTIONAL_MIDDLE
    + [(name, "Q") for name in _STACK_HEAP]       # 0x48 .. 0x67
    + _OPTIONAL_TAIL,                             # 0x68, 0x6C
    112)                                          # 0x70 data directories follow

IMAGE_DATA_DIRECTORY = Layout("IMAGE_DATA_DIRECTORY", [
    ("VirtualAddress", "I"),  # 0x00 an RVA; for the security directory a file offset
    ("Size", "I"),            # 0x04
], 8)

IMAGE_SECTION_HEADER = Layout("IMAGE_SECTION_HEADER", [
    ("Name", "8s"),                   # 0x00
    ("VirtualSize", "I"),             # 0x08 (Misc)
    ("VirtualAddress", "I"),          # 0x0C
    ("SizeOfRawData", "I"),           # 0x10
    ("PointerToRawData", "I"),        # 0x14
    ("PointerToRelocations", "I"),    # 0x18
    ("PointerToLinenumbers", "I"),    # 0x1C
    ("NumberOfRelocations", "H"),     # 0x20
    ("NumberOfLinenumbers", "H"),     # 0x22
    ("Characteristics", "I"),         # 0x24
], 40)

# Attribute certificate table entry (PE format spec, "The Attribute Certificate Table (Image Only)").
WIN_CERTIFICATE = Layout("WIN_CERTIFICATE", [
    ("dwLength", "I"),          # 0x00 length of the entry including this header
    ("wRevision", "H"),         # 0x04 WIN_CERT_REVISION_2_0
    ("wCertificateType", "H"),  # 0x06 WIN_CERT_TYPE_PKCS_SIGNED_DATA
], 8)                           # 0x08 bCertificate[]

CHECKSUM_OFFSET = IMAGE_OPTIONAL_HEADER32.offsets["CheckSum"]
if CHECKSUM_OFFSET != IMAGE_OPTIONAL_HEADER64.offsets["CheckSum"] or CHECKSUM_OFFSET != 0x40:
    raise ImportError("CheckSum must sit at optional header offset 0x40 in PE32 and PE32+")
