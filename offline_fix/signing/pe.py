"""Bounded PE reader for Authenticode: headers, sections, the certificate table, image hashes.

The Authenticode image hash (Authenticode_PE.docx, "Calculating the PE Image Hash", and
https://learn.microsoft.com/en-us/windows-hardware/drivers/install/authenticode) is computed
here exactly as specified:

1. the headers from offset 0 to SizeOfHeaders, skipping the 4-byte CheckSum field and the
   8-byte Certificate Table entry of the data directories;
2. every section with SizeOfRawData > 0, sorted by PointerToRawData, SizeOfRawData bytes each;
   SUM_OF_BYTES_HASHED = SizeOfHeaders + the sum of those sizes;
3. if the file is larger, the extra data from offset SUM_OF_BYTES_HASHED, of length
   FILE_SIZE - (certificate table size + SUM_OF_BYTES_HASHED);
4. if FILE_SIZE is not a multiple of 8, zero padding of 8 - FILE_SIZE % 8 bytes (Windows pads
   the file before appending a certificate table, so it hashes the padding too).

Files are hashed in chunks: a path larger than ``WHOLE_READ_LIMIT`` is never read whole.
Non-PE files (.inf, .cat members) get a flat hash of the whole file (``flat_digests``).
Every read is bounded: it returns exactly the requested length or raises PeError naming the
field and offset.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from typing import BinaryIO, Iterable, Union

from offline_fix.errors import CorruptInput, NotFound, PermissionDenied, Unsupported
from offline_fix.signing.pe_layout import (
    CHECKSUM_OFFSET,
    IMAGE_DATA_DIRECTORY,
    IMAGE_DIRECTORY_ENTRY_SECURITY,
    IMAGE_DOS_HEADER,
    IMAGE_DOS_SIGNATURE,
    IMAGE_FILE_HEADER,
    IMAGE_NT_OPTIONAL_HDR32_MAGIC,
    IMAGE_NT_OPTIONAL_HDR64_MAGIC,
    IMAGE_NT_SIGNATURE,
    IMAGE_NUMBEROF_DIRECTORY_ENTRIES,
    IMAGE_OPTIONAL_HEADER32,
    IMAGE_OPTIONAL_HEADER64,
    IMAGE_SECTION_HEADER,
    WIN_CERTIFICATE,
)

Source = Union[bytes, bytearray, memoryview, str, os.PathLike, BinaryIO]

DEFAULT_ALGORITHMS = ("sha1", "sha256")
SUPPORTED_ALGORITHMS = ("md5", "sha1", "sha256", "sha384", "sha512")
WHOLE_READ_LIMIT = 8 << 20  # paths up to this size are read in one call, larger ones streamed
CHUNK = 1 << 20
MAX_CERT_ENTRIES = 64  # WIN_CERTIFICATE entries walked at most in one table


class PeError(CorruptInput):
    """A PE file whose structure is broken or truncated (or that is not a PE at all)."""


class NotAPe(PeError):
    """The file does not start with an MZ header pointing to a "PE\\0\\0" signature."""


@dataclass(frozen=True)
class Section:
    name: str
    virtual_size: int
    virtual_address: int
    size_of_raw_data: int
    pointer_to_raw_data: int


@dataclass(frozen=True)
class WinCertificate:
    """One entry of the attribute certificate table (WIN_CERTIFICATE)."""

    offset: int          # file offset of the entry header
    length: int          # dwLength, header included
    revision: int        # wRevision (0x0200 expected)
    certificate_type: int  # wCertificateType (2 = PKCS#7 SignedData)
    data: bytes          # bCertificate (dwLength - 8 bytes)


@dataclass
class PeImage:
    """The parts of a PE image that Authenticode needs, with file offsets."""

    file_size: int
    pe_offset: int
    machine: int
    pe32_plus: bool
    checksum: int
    checksum_offset: int
    size_of_headers: int
    number_of_rva_and_sizes: int
    data_directories: list[tuple[int, int]]  # (VirtualAddress, Size)
    security_entry_offset: int | None         # file offset of the Certificate Table entry
    cert_table_offset: int                    # 0 when there is no table
    cert_table_size: int
    sections: list[Section]
    anomalies: list[str] = field(default_factory=list)

    @property
    def has_certificate_table(self) -> bool:
        return self.cert_table_size > 0

    def authenticode_ranges(self) -> tuple[list[tuple[int, int]], int]:
        """The (offset, length) ranges hashed, in order, and the zero padding length."""
        ranges: list[tuple[int, int]] = []
        skips = [(self.checksum_offset, 4)]
        if self.security_entry_offset is not None:
            skips.append((self.security_entry_offset, IMAGE_DATA_DIRECTORY.size))
        pos = 0
        for skip_at, skip_len in sorted(skips):
            ranges.append((pos, skip_at - pos))
            pos = skip_at + skip_len
        ranges.append((pos, self.size_of_headers - pos))
        total = self.size_of_headers
        for sec in sorted((s for s in self.sections if s.size_of_raw_data), key=lambda s: s.pointer_to_raw_data):
            ranges.append((sec.pointer_to_raw_data, sec.size_of_raw_data))
            total += sec.size_of_raw_data
        extra = self.file_size - (self.cert_table_size + total)
        if self.file_size > total and extra > 0:
            ranges.append((total, extra))
        padding = (8 - self.file_size % 8) % 8
        return [r for r in ranges if r[1] > 0], padding


class _Blob:
    """Bounded random access over bytes, a path or a binary file object."""

    def __init__(self, source: Source, name: str | None = None) -> None:
        self._file: BinaryIO | None = None
        self._owned = False
        self.data: bytes | memoryview | None = None
        if isinstance(source, (bytes, bytearray, memoryview)):
            self.data = source if isinstance(source, bytes) else memoryview(source)
            self.size = len(self.data)
            self.name = name or "<bytes>"
        elif isinstance(source, (str, os.PathLike)):
            self.name = name or os.fspath(source)
            try:
                f = open(source, "rb")
            except FileNotFoundError as e:
                raise NotFound("file not found", path=self.name) from e
            except PermissionError as e:
                raise PermissionDenied("cannot read file", path=self.name) from e
            except IsADirectoryError as e:
                raise NotFound("not a file", path=self.name) from e
            except OSError as e:
                raise PermissionDenied(f"cannot open file: {e.strerror}", path=self.name) from e
            self.size = os.fstat(f.fileno()).st_size
            if self.size <= WHOLE_READ_LIMIT:
                try:
                    self.data = f.read()
                finally:
                    f.close()
                if len(self.data) != self.size:
                    raise PeError("file changed while reading", path=self.name,
                                  expected=self.size, found=len(self.data))
            else:
                self._file, self._owned = f, True
        elif hasattr(source, "read") and hasattr(source, "seek"):
            self._file = source  # type: ignore[assignment]
            self.name = name or str(getattr(source, "name", "<file object>"))
            self.size = source.seek(0, io.SEEK_END)
        else:
            raise Unsupported("cannot read this kind of source", found=type(source).__name__)

    def close(self) -> None:
        if self._owned and self._file is not None:
            self._file.close()
        self._file = None

    def __enter__(self) -> "_Blob":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read(self, offset: int, length: int, field: str, exc: type[CorruptInput] = PeError) -> bytes:
        """Exactly ``length`` bytes at ``offset`` or an error naming the field."""
        if offset < 0 or length < 0 or offset + length > self.size:
            raise exc("truncated file", path=self.name, offset=offset, field=field,
                      expected=f"{length} bytes", found=max(0, self.size - offset))
        if self.data is not None:
            return bytes(self.data[offset:offset + length])
        f = self._file
        if f is None:
            raise exc("file already closed", path=self.name, offset=offset, field=field)
        f.seek(offset)
        out = f.read(length)
        if len(out) != length:
            raise exc("short read", path=self.name, offset=offset, field=field,
                      expected=length, found=len(out))
        return out

    def feed(self, hashers: list, offset: int, length: int, field: str) -> None:
        """Pass ``length`` bytes at ``offset`` to every hasher, in chunks."""
        if offset < 0 or offset + length > self.size:
            raise PeError("range outside the file", path=self.name, offset=offset, field=field,
                          expected=f"{length} bytes", found=max(0, self.size - offset))
        if self.data is not None:
            view = memoryview(self.data)[offset:offset + length]
            for h in hashers:
                h.update(view)
            return
        done = 0
        while done < length:
            chunk = self.read(offset + done, min(CHUNK, length - done), field)
            for h in hashers:
                h.update(chunk)
            done += len(chunk)


def _hashers(algorithms: Iterable[str]) -> dict:
    out = {}
    for name in algorithms:
        if name not in SUPPORTED_ALGORITHMS:
            raise Unsupported("unsupported digest algorithm", field="algorithm", found=name,
                              expected=SUPPORTED_ALGORITHMS)
        out[name] = hashlib.new(name)
    return out


def parse_headers(blob: _Blob) -> PeImage:
    """Parse DOS, NT, optional headers, data directories and the section table."""
    name = blob.name
    if blob.size < IMAGE_DOS_HEADER.size:
        raise NotAPe("too small for a DOS header", path=name, expected=f">= {IMAGE_DOS_HEADER.size} bytes",
                     found=blob.size)
    dos = IMAGE_DOS_HEADER.unpack(blob.read(0, IMAGE_DOS_HEADER.size, "IMAGE_DOS_HEADER"))
    if dos.e_magic != IMAGE_DOS_SIGNATURE:
        raise NotAPe("no MZ signature", path=name, offset=0, field="e_magic", expected=IMAGE_DOS_SIGNATURE,
                     found=dos.e_magic)
    pe_off = dos.e_lfanew
    if pe_off + 4 + IMAGE_FILE_HEADER.size > blob.size:
        raise NotAPe("e_lfanew points past the end of the file", path=name, offset=0x3C, field="e_lfanew",
                     expected=f"< {blob.size}", found=pe_off)
    if blob.read(pe_off, 4, "Signature") != IMAGE_NT_SIGNATURE:
        raise NotAPe("no PE signature", path=name, offset=pe_off, field="Signature",
                     expected=IMAGE_NT_SIGNATURE, found=blob.read(pe_off, 4, "Signature"))
    fh_off = pe_off + 4
    fh = IMAGE_FILE_HEADER.unpack(blob.read(fh_off, IMAGE_FILE_HEADER.size, "IMAGE_FILE_HEADER"))
    opt_off = fh_off + IMAGE_FILE_HEADER.size
    magic = int.from_bytes(blob.read(opt_off, 2, "OptionalHeader.Magic"), "little")
    layout = {IMAGE_NT_OPTIONAL_HDR32_MAGIC: IMAGE_OPTIONAL_HEADER32,
              IMAGE_NT_OPTIONAL_HDR64_MAGIC: IMAGE_OPTIONAL_HEADER64}.get(magic)
    if layout is None:
        raise PeError("unknown optional header magic", path=name, offset=opt_off, field="Magic",
                      expected="0x10b or 0x20b", found=hex(magic))
    if fh.SizeOfOptionalHeader < layout.size:
        raise PeError("optional header too small", path=name, offset=fh_off + 0x10, field="SizeOfOptionalHeader",
                      expected=f">= {layout.size}", found=fh.SizeOfOptionalHeader)
    opt = layout.unpack(blob.read(opt_off, layout.size, layout.name))
    anomalies: list[str] = []
    room = (fh.SizeOfOptionalHeader - layout.size) // IMAGE_DATA_DIRECTORY.size
    count = min(opt.NumberOfRvaAndSizes, room, IMAGE_NUMBEROF_DIRECTORY_ENTRIES)
    if opt.NumberOfRvaAndSizes > min(room, IMAGE_NUMBEROF_DIRECTORY_ENTRIES):
        anomalies.append(f"NumberOfRvaAndSizes {opt.NumberOfRvaAndSizes} exceeds the room for "
                         f"{min(room, IMAGE_NUMBEROF_DIRECTORY_ENTRIES)} directories")
    dd_off = opt_off + layout.size
    raw_dd = blob.read(dd_off, count * IMAGE_DATA_DIRECTORY.size, "DataDirectory")
    dirs = list(IMAGE_DATA_DIRECTORY.struct.iter_unpack(raw_dd))  # (VirtualAddress, Size) pairs
    checksum_offset = opt_off + CHECKSUM_OFFSET
    security_entry = None
    cert_off = cert_size = 0
    if count > IMAGE_DIRECTORY_ENTRY_SECURITY:
        security_entry = dd_off + IMAGE_DIRECTORY_ENTRY_SECURITY * IMAGE_DATA_DIRECTORY.size
        cert_off, cert_size = dirs[IMAGE_DIRECTORY_ENTRY_SECURITY]
    else:
        anomalies.append("no Certificate Table entry (NumberOfRvaAndSizes <= 4)")
    sh_off = opt_off + fh.SizeOfOptionalHeader
    table = blob.read(sh_off, fh.NumberOfSections * IMAGE_SECTION_HEADER.size, "IMAGE_SECTION_HEADER[]")
    sections = []
    for i, sh in enumerate(IMAGE_SECTION_HEADER.struct.iter_unpack(table)):
        # Name, VirtualSize, VirtualAddress, SizeOfRawData, PointerToRawData (pe_layout order)
        sec = Section(sh[0].rstrip(b"\0").decode("latin-1"), sh[1], sh[2], sh[3], sh[4])
        if sec.size_of_raw_data and sec.pointer_to_raw_data + sec.size_of_raw_data > blob.size:
            raise PeError("section data runs past the end of the file", path=name,
                          offset=sh_off + i * IMAGE_SECTION_HEADER.size, field=f"section {sec.name!r} SizeOfRawData",
                          expected=f"end <= {blob.size}", found=sec.pointer_to_raw_data + sec.size_of_raw_data)
        sections.append(sec)
    headers_end = sh_off + fh.NumberOfSections * IMAGE_SECTION_HEADER.size
    size_of_headers = opt.SizeOfHeaders
    needed = max(checksum_offset + 4, (security_entry or 0) + IMAGE_DATA_DIRECTORY.size)
    if size_of_headers < needed:
        raise PeError("SizeOfHeaders does not cover the optional header", path=name, offset=opt_off + 0x3C,
                      field="SizeOfHeaders", expected=f">= {needed}", found=size_of_headers)
    if size_of_headers > blob.size:
        raise PeError("SizeOfHeaders runs past the end of the file", path=name, offset=opt_off + 0x3C,
                      field="SizeOfHeaders", expected=f"<= {blob.size}", found=size_of_headers)
    if size_of_headers < headers_end:
        anomalies.append(f"SizeOfHeaders {size_of_headers:#x} ends before the section table ({headers_end:#x})")
    if cert_size:
        if cert_off < size_of_headers or cert_off + cert_size > blob.size:
            raise PeError("certificate table outside the file", path=name, offset=security_entry,
                          field="Certificate Table", expected=f"within [{size_of_headers}, {blob.size}]",
                          found=(cert_off, cert_size))
        if cert_off + cert_size != blob.size:
            anomalies.append("certificate table is not at the end of the file")
        if cert_off % 8:
            anomalies.append("certificate table is not 8-byte aligned")
    return PeImage(
        file_size=blob.size, pe_offset=pe_off, machine=fh.Machine,
        pe32_plus=magic == IMAGE_NT_OPTIONAL_HDR64_MAGIC, checksum=opt.CheckSum,
        checksum_offset=checksum_offset, size_of_headers=size_of_headers,
        number_of_rva_and_sizes=opt.NumberOfRvaAndSizes, data_directories=dirs,
        security_entry_offset=security_entry, cert_table_offset=cert_off if cert_size else 0,
        cert_table_size=cert_size, sections=sections, anomalies=anomalies,
    )


class PeFile:
    """An open PE: ``image`` (headers), ``certificates()`` and ``digests()`` share one read."""

    def __init__(self, source: Source, name: str | None = None) -> None:
        self._blob = _Blob(source, name)
        try:
            self.image = parse_headers(self._blob)
        except BaseException:
            self._blob.close()
            raise

    @property
    def name(self) -> str:
        return self._blob.name

    def close(self) -> None:
        self._blob.close()

    def __enter__(self) -> "PeFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def certificates(self) -> list[WinCertificate]:
        """The WIN_CERTIFICATE entries of the certificate table, each 8-byte aligned."""
        img = self.image
        if not img.cert_table_size:
            return []
        table = self._blob.read(img.cert_table_offset, img.cert_table_size, "Certificate Table")
        out: list[WinCertificate] = []
        pos = 0
        while pos + WIN_CERTIFICATE.size <= len(table):
            if len(out) >= MAX_CERT_ENTRIES:
                raise PeError("too many certificate table entries", path=self.name,
                              offset=img.cert_table_offset + pos, expected=f"<= {MAX_CERT_ENTRIES}")
            hdr = WIN_CERTIFICATE.unpack(table, pos)
            if hdr.dwLength < WIN_CERTIFICATE.size or pos + hdr.dwLength > len(table):
                raise PeError("bad WIN_CERTIFICATE length", path=self.name, offset=img.cert_table_offset + pos,
                              field="dwLength", expected=f"8..{len(table) - pos}", found=hdr.dwLength)
            out.append(WinCertificate(img.cert_table_offset + pos, hdr.dwLength, hdr.wRevision,
                                      hdr.wCertificateType, table[pos + WIN_CERTIFICATE.size:pos + hdr.dwLength]))
            pos += (hdr.dwLength + 7) & ~7
        rest = table[pos:]
        if rest.strip(b"\0"):
            raise PeError("trailing bytes in the certificate table", path=self.name,
                          offset=img.cert_table_offset + pos, field="Certificate Table",
                          expected="zero padding", found=len(rest))
        return out

    def digests(self, algorithms: Iterable[str] = DEFAULT_ALGORITHMS) -> dict[str, bytes]:
        """The Authenticode image hash for each algorithm, in one pass over the file."""
        hashers = _hashers(algorithms)
        ranges, padding = self.image.authenticode_ranges()
        group = list(hashers.values())
        for offset, length in ranges:
            self._blob.feed(group, offset, length, "hashed range")
        if padding:
            for h in group:
                h.update(bytes(padding))
        return {name: h.digest() for name, h in hashers.items()}


def authenticode_digests(source: Source, algorithms: Iterable[str] = DEFAULT_ALGORITHMS) -> dict[str, bytes]:
    """Authenticode SHA1/SHA256 (or other) image hashes of a PE given as bytes, path or file object."""
    with PeFile(source) as pe:
        return pe.digests(algorithms)


def flat_digests(source: Source, algorithms: Iterable[str] = DEFAULT_ALGORITHMS) -> dict[str, bytes]:
    """Hashes of the whole file (catalog members that are not PE files, such as .inf)."""
    hashers = _hashers(algorithms)
    with _Blob(source) as blob:
        blob.feed(list(hashers.values()), 0, blob.size, "file")
    return {name: h.digest() for name, h in hashers.items()}


def is_zero_filled(source: Source) -> bool:
    """True when every byte of the file is zero (or the file is empty)."""
    with _Blob(source) as blob:
        pos = 0
        while pos < blob.size:
            chunk = blob.read(pos, min(CHUNK, blob.size - pos), "file")
            if chunk.count(0) != len(chunk):
                return False
            pos += len(chunk)
    return True


def pe_checksum(source: Source) -> int:
    """The PE image checksum as the loader computes it (CheckSumMappedFile): a 16-bit
    one's-complement-style sum of the file's WORDs with the CheckSum field taken as zero,
    plus the file size."""
    with PeFile(source) as pe, _Blob(source) as blob:
        skip = pe.image.checksum_offset
        total = 0
        pos = 0
        while pos < blob.size:
            chunk = bytearray(blob.read(pos, min(CHUNK, blob.size - pos), "file"))
            lo, hi = skip - pos, skip + 4 - pos
            if hi > 0 and lo < len(chunk):
                chunk[max(lo, 0):min(hi, len(chunk))] = bytes(min(hi, len(chunk)) - max(lo, 0))
            if len(chunk) % 2:
                chunk.append(0)
            total += sum(memoryview(chunk).cast("H"))
            pos += CHUNK
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        return (total + blob.size) & 0xFFFFFFFF
