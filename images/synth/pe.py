"""Minimal PE32+ files that stand for drivers on the demo disk: a valid image (DOS header, PE
signature, COFF file header, optional header with 16 data directories, one .text section that
returns at once, the optional-header CheckSum computed as Windows' CheckSumMappedFile does),
unsigned. Subsystem NATIVE for kernel drivers (.sys), WINDOWS_GUI for a UMDF driver (.dll).

Specification: Microsoft, "PE Format", https://learn.microsoft.com/en-us/windows/win32/debug/pe-format
"""

from __future__ import annotations

import struct

# IMAGE_DOS_HEADER: only e_magic (0x00) and e_lfanew (0x3C) matter to a loader.
DOS_HEADER_SIZE = 0x40
E_LFANEW_OFFSET = 0x3C
NT_HEADERS_OFFSET = 0x80
# IMAGE_FILE_HEADER (20 bytes): Machine, NumberOfSections, TimeDateStamp, PointerToSymbolTable,
# NumberOfSymbols, SizeOfOptionalHeader, Characteristics.
FILE_HEADER = struct.Struct("<HHIIIHH")
# IMAGE_OPTIONAL_HEADER64 without the data directories (112 bytes): Magic, Major/MinorLinkerVersion,
# SizeOfCode, SizeOfInitializedData, SizeOfUninitializedData, AddressOfEntryPoint, BaseOfCode,
# ImageBase, SectionAlignment, FileAlignment, Major/MinorOperatingSystemVersion,
# Major/MinorImageVersion, Major/MinorSubsystemVersion, Win32VersionValue, SizeOfImage,
# SizeOfHeaders, CheckSum (offset 64), Subsystem, DllCharacteristics, SizeOfStackReserve,
# SizeOfStackCommit, SizeOfHeapReserve, SizeOfHeapCommit, LoaderFlags, NumberOfRvaAndSizes.
OPTIONAL_HEADER64 = struct.Struct("<HBBIIIIIQIIHHHHHHIIIIHHQQQQII")
DATA_DIRECTORIES = 16
DATA_DIRECTORY = struct.Struct("<II")
# IMAGE_SECTION_HEADER (40 bytes): Name, VirtualSize, VirtualAddress, SizeOfRawData,
# PointerToRawData, PointerToRelocations, PointerToLinenumbers, NumberOfRelocations,
# NumberOfLinenumbers, Characteristics.
SECTION_HEADER = struct.Struct("<8sIIIIIIHHI")
CHECKSUM_OFFSET = 64  # inside the optional header
assert FILE_HEADER.size == 20 and OPTIONAL_HEADER64.size == 112 and SECTION_HEADER.size == 40

IMAGE_FILE_MACHINE_AMD64 = 0x8664
IMAGE_FILE_EXECUTABLE_IMAGE = 0x0002
IMAGE_FILE_LARGE_ADDRESS_AWARE = 0x0020
IMAGE_FILE_DLL = 0x2000
IMAGE_NT_OPTIONAL_HDR64_MAGIC = 0x20B
IMAGE_SUBSYSTEM_NATIVE = 1
IMAGE_SUBSYSTEM_WINDOWS_GUI = 2
IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE = 0x0040
IMAGE_DLLCHARACTERISTICS_NX_COMPAT = 0x0100
IMAGE_SCN_CNT_CODE_EXEC_READ = 0x60000020
FILE_ALIGNMENT = 0x200
SECTION_ALIGNMENT = 0x1000


def pe_checksum(image: bytes, checksum_at: int) -> int:
    """The optional-header CheckSum: 16-bit one's-complement-style sum of the file (the CheckSum
    field taken as zero), folded, plus the file length."""
    data = image[:checksum_at] + b"\0\0\0\0" + image[checksum_at + 4:]
    if len(data) % 2:
        data += b"\0"
    total = 0
    for (word,) in struct.iter_unpack("<H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return ((total & 0xFFFF) + (total >> 16) + len(image)) & 0xFFFFFFFF


def driver_image(name: str, *, timestamp: int = 0x57899A4F, umdf: bool = False, version: tuple[int, int] = (10, 0)) -> bytes:
    """An unsigned PE32+ image for ``name``: a kernel driver, or a UMDF driver DLL."""
    code = b"\x31\xc0\xc3"  # xor eax, eax ; ret  (DriverEntry returning STATUS_SUCCESS)
    text = code + b"\0" + f"offline-fix demo driver {name}".encode("ascii", "replace") + b"\0"
    raw_size = -(-len(text) // FILE_ALIGNMENT) * FILE_ALIGNMENT
    headers = FILE_ALIGNMENT
    characteristics = IMAGE_FILE_EXECUTABLE_IMAGE | IMAGE_FILE_LARGE_ADDRESS_AWARE | (IMAGE_FILE_DLL if umdf else 0)
    optional = OPTIONAL_HEADER64.pack(
        IMAGE_NT_OPTIONAL_HDR64_MAGIC, 14, 0, raw_size, 0, 0, SECTION_ALIGNMENT, SECTION_ALIGNMENT,
        0x180000000 if umdf else 0x1C0000000, SECTION_ALIGNMENT, FILE_ALIGNMENT, *version, *version, *version, 0,
        2 * SECTION_ALIGNMENT, headers, 0, IMAGE_SUBSYSTEM_WINDOWS_GUI if umdf else IMAGE_SUBSYSTEM_NATIVE,
        IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE | IMAGE_DLLCHARACTERISTICS_NX_COMPAT,
        0x40000, 0x1000, 0x100000, 0x1000, 0, DATA_DIRECTORIES)
    optional += DATA_DIRECTORY.pack(0, 0) * DATA_DIRECTORIES
    file_header = FILE_HEADER.pack(IMAGE_FILE_MACHINE_AMD64, 1, timestamp, 0, 0, len(optional), characteristics)
    section = SECTION_HEADER.pack(b".text\0\0\0", len(text), SECTION_ALIGNMENT, raw_size, headers, 0, 0, 0, 0,
                                  IMAGE_SCN_CNT_CODE_EXEC_READ)
    dos = bytearray(NT_HEADERS_OFFSET)
    dos[0:2] = b"MZ"
    struct.pack_into("<I", dos, E_LFANEW_OFFSET, NT_HEADERS_OFFSET)
    head = bytes(dos) + b"PE\0\0" + file_header + optional + section
    image = bytearray(head.ljust(headers, b"\0") + text.ljust(raw_size, b"\0"))
    at = NT_HEADERS_OFFSET + 4 + FILE_HEADER.size + CHECKSUM_OFFSET
    struct.pack_into("<I", image, at, pe_checksum(bytes(image), at))
    return bytes(image)
