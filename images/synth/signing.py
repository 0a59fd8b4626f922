"""Synthetic signing material: a test signing CA, catalogs, minimal PE files, for the tests and
for the demo disk (no real keys or Microsoft files: everything is made here, at build time).

Everything is built from first principles, independently of offline_fix.signing: DER is
encoded by the small helpers below, certificates and signatures are made with ``cryptography``, and the Authenticode hash of the synthetic PE files is computed by
``simple_authenticode`` (valid for these contiguous-section files only), so that the parsers
under test are not checked against themselves.
"""

from __future__ import annotations

import hashlib
import random
import struct
from dataclasses import dataclass
from datetime import datetime, timezone

from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOT_BEFORE = datetime(2020, 1, 1, tzinfo=timezone.utc)
NOT_AFTER = datetime(2040, 1, 1, tzinfo=timezone.utc)
PINNED = datetime(2024, 6, 1, tzinfo=timezone.utc)  # inside the test CA's validity

# --- DER encoding (X.690) ---------------------------------------------------------------------


def tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        head = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        head = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + head + content


def seq(*parts: bytes) -> bytes:
    return tlv(0x30, b"".join(parts))


def set_(*parts: bytes, sort: bool = True) -> bytes:
    return tlv(0x31, b"".join(sorted(parts) if sort else parts))


def oid(dotted: str) -> bytes:
    return core.ObjectIdentifier(dotted).dump()  # asn1crypto's encoder, not ours


def integer(n: int) -> bytes:
    return tlv(0x02, n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big", signed=True))


def octets(b: bytes) -> bytes:
    return tlv(0x04, b)


def null() -> bytes:
    return b"\x05\x00"


def ctx(n: int, content: bytes) -> bytes:
    return tlv(0xA0 + n, content)


def utctime(t: datetime) -> bytes:
    return tlv(0x17, t.strftime("%y%m%d%H%M%SZ").encode())


def bmp(s: str) -> bytes:
    return tlv(0x1E, s.encode("utf-16-be"))


DIGEST_OID = {"sha1": "1.3.14.3.2.26", "sha256": "2.16.840.1.101.3.4.2.1"}
SIGNED_DATA = "1.2.840.113549.1.7.2"
CTL = "1.3.6.1.4.1.311.10.1"
SPC_INDIRECT = "1.3.6.1.4.1.311.2.1.4"
SPC_PE_IMAGE = "1.3.6.1.4.1.311.2.1.15"
SPC_CAB_DATA = "1.3.6.1.4.1.311.2.1.25"
CAT_NAMEVALUE = "1.3.6.1.4.1.311.12.2.1"
CAT_MEMBERINFO2 = "1.3.6.1.4.1.311.12.2.3"
MEMBER_V1 = "1.3.6.1.4.1.311.12.1.2"
MEMBER_V2 = "1.3.6.1.4.1.311.12.1.3"


def alg_id(name: str) -> bytes:
    return seq(oid(DIGEST_OID[name]), null())


# --- a test signing CA --------------------------------------------------------------------------


@dataclass
class TestCA:
    root_key: rsa.RSAPrivateKey
    root: x509.Certificate
    signer_key: rsa.RSAPrivateKey
    signer: x509.Certificate

    @property
    def chain_der(self) -> list[bytes]:
        return [c.public_bytes(serialization.Encoding.DER) for c in (self.signer, self.root)]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "offline-fix tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


_SMALL_PRIMES = [p for p in range(3, 4000, 2) if all(p % q for q in range(3, int(p ** 0.5) + 1, 2))]


def _probable_prime(n: int, rng: random.Random) -> bool:
    if n < 2 or n % 2 == 0:
        return n == 2
    for p in _SMALL_PRIMES:  # trial division first: it rejects most candidates cheaply
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(40):  # Miller-Rabin
        x = pow(rng.randrange(2, n - 1), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def seeded_rsa_key(seed: int, key_size: int = 2048) -> rsa.RSAPrivateKey:
    """An RSA key made deterministically from ``seed`` (so that the demo disk is the same bytes
    on every build). For synthetic test material only: never for anything trusted."""
    rng = random.Random(seed)
    e = 65537

    def prime() -> int:
        while True:
            candidate = rng.getrandbits(key_size // 2) | (3 << (key_size // 2 - 2)) | 1
            if candidate % e != 1 and _probable_prime(candidate, rng):
                return candidate

    p, q = prime(), prime()
    while q == p:
        q = prime()
    d = pow(e, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p),
                                    rsa.RSAPublicNumbers(e, p * q))
    return numbers.private_key()


def make_ca(label: str = "Test", key_size: int = 2048, not_before: datetime = NOT_BEFORE,
            not_after: datetime = NOT_AFTER, seed: int | None = None) -> TestCA:
    """A root CA and a code-signing leaf it issued (RSA, sha256WithRSAEncryption). With ``seed``
    the keys and serial numbers are deterministic (the demo disk); without, random (the tests)."""
    if seed is None:
        new_key = lambda n: rsa.generate_private_key(public_exponent=65537, key_size=key_size)  # noqa: E731
        serial = lambda n: x509.random_serial_number()  # noqa: E731
    else:
        new_key = lambda n: seeded_rsa_key(seed * 2 + n, key_size)  # noqa: E731
        serial = lambda n: seed * 2 + n + 1  # noqa: E731
    root_key = new_key(0)
    root_name = _name(f"{label} Root CA")
    root = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
            .public_key(root_key.public_key()).serial_number(serial(0))
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(root_key, hashes.SHA256()))
    signer_key = new_key(1)
    signer = (x509.CertificateBuilder().subject_name(_name(f"{label} Code Signer")).issuer_name(root_name)
              .public_key(signer_key.public_key()).serial_number(serial(1))
              .not_valid_before(not_before).not_valid_after(not_after)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
              .sign(root_key, hashes.SHA256()))
    return TestCA(root_key, root, signer_key, signer)


def signed_data(content_type: str, content_tlv: bytes, content_contents: bytes, ca: TestCA | None,
                alg: str = "sha256", signing_time: datetime | None = None) -> bytes:
    """A ContentInfo(SignedData) over ``content``; ``ca=None`` gives an unsigned envelope."""
    encap = seq(oid(content_type), ctx(0, content_tlv))
    if ca is None:
        return seq(oid(SIGNED_DATA), ctx(0, seq(integer(1), set_(), encap, set_())))
    digest = hashlib.new(alg, content_contents).digest()
    attrs = [seq(oid("1.2.840.113549.1.9.3"), set_(oid(content_type))),
             seq(oid("1.2.840.113549.1.9.4"), set_(octets(digest)))]
    if signing_time is not None:
        attrs.append(seq(oid("1.2.840.113549.1.9.5"), set_(utctime(signing_time))))
    attrs_set = set_(*attrs)
    algo = {"sha1": hashes.SHA1(), "sha256": hashes.SHA256()}[alg]
    signature = ca.signer_key.sign(attrs_set, padding.PKCS1v15(), algo)
    issuer = ca.signer.issuer.public_bytes()
    signer_info = seq(integer(1), seq(issuer, integer(ca.signer.serial_number)), alg_id(alg),
                      tlv(0xA0, attrs_set[_header_len(attrs_set):]),
                      seq(oid("1.2.840.113549.1.1.1"), null()), octets(signature))
    certs = tlv(0xA0, b"".join(ca.chain_der))
    sd = seq(integer(1), set_(alg_id(alg)), encap, certs, set_(signer_info))
    return seq(oid(SIGNED_DATA), ctx(0, sd))


def _header_len(der: bytes) -> int:
    return 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)


# --- catalogs -----------------------------------------------------------------------------------


@dataclass
class CatFile:
    """A file to list in a catalog: its name and its (Authenticode or flat) digests."""

    name: str
    sha1: bytes
    sha256: bytes
    pe: bool = True


def _name_value(tag: str, value: str) -> bytes:
    return seq(oid(CAT_NAMEVALUE), set_(seq(bmp(tag), integer(0x10010001),
                                            octets((value + "\0").encode("utf-16-le")))))


def _indirect(alg: str, digest: bytes, pe: bool) -> bytes:
    if pe:
        data = seq(oid(SPC_PE_IMAGE), seq(tlv(0x03, b"\x00"), ctx(0, ctx(2, tlv(0x80, b"")))))
    else:
        data = seq(oid(SPC_CAB_DATA), ctx(2, tlv(0x80, b"")))
    return seq(oid(SPC_INDIRECT), set_(seq(data, seq(alg_id(alg), octets(digest)))))


def ctl(files: list[CatFile], version: int = 2, this_update: datetime = PINNED) -> bytes:
    """A CertificateTrustList: v1 = one SHA1 member per file (tag: hex as UTF-16LE text);
    v2 = a tag-only SHA1 member plus a SHA256 member with SpcIndirectData per file (raw tags)."""
    members = []
    for f in files:
        if version == 1:
            tag = (f.sha1.hex().upper() + "\0").encode("utf-16-le")
            attrs = [_name_value("File", f.name), _indirect("sha1", f.sha1, f.pe)]
            members.append(seq(octets(tag), set_(*attrs)))
        else:
            members.append(seq(octets(f.sha1), set_(seq(oid(CAT_MEMBERINFO2), set_(ctx(0, b""))))))
            attrs = [seq(oid(CAT_MEMBERINFO2), set_(ctx(0, b""))), _indirect("sha256", f.sha256, f.pe),
                     _name_value("File", f.name)]
            members.append(seq(octets(f.sha256), set_(*attrs)))
    ext = ctx(0, seq(seq(oid(CAT_NAMEVALUE), octets(seq(bmp("OS"), integer(0x10010001),
                                                           octets("_v100_X64\0".encode("utf-16-le")))))))
    return seq(
        seq(oid("1.3.6.1.4.1.311.12.1.1")),
        octets(hashlib.md5(b"".join(members)).digest()),
        utctime(this_update),
        seq(oid(MEMBER_V1 if version == 1 else MEMBER_V2), null()),
        seq(*members),
        ext,
    )


def build_catalog(files: list[CatFile], ca: TestCA | None, version: int = 2) -> bytes:
    content = ctl(files, version)
    return signed_data(CTL, content, content[_header_len(content):], ca)


# --- minimal PE files ---------------------------------------------------------------------------

FILE_ALIGN = 0x200


def build_pe(seed: int = 0, text_size: int = 0x400, data_size: int = 0x200, pe32_plus: bool = True,
             trailing: bytes = b"") -> bytes:
    """A small valid PE (a driver-like image: .text and .data), with deterministic content."""
    rng = random.Random(seed)
    opt_size = (112 if pe32_plus else 96) + 16 * 8
    headers_end = 0x80 + 4 + 20 + opt_size + 2 * 40
    size_of_headers = (headers_end + FILE_ALIGN - 1) // FILE_ALIGN * FILE_ALIGN
    text_size = (text_size + FILE_ALIGN - 1) // FILE_ALIGN * FILE_ALIGN
    data_size = (data_size + FILE_ALIGN - 1) // FILE_ALIGN * FILE_ALIGN
    dos = bytearray(0x80)
    dos[0:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 0x80)
    fh = struct.pack("<HHIIIHH", 0x8664 if pe32_plus else 0x14C, 2, 0x5F000000 + seed, 0, 0, opt_size, 0x22)
    if pe32_plus:
        opt = struct.pack("<HBBIIIIIQIIHHHHHHIIIIHHQQQQII", 0x20B, 14, 0, text_size, data_size, 0, 0x1000,
                          0x1000, 0x140000000, 0x1000, FILE_ALIGN, 10, 0, 10, 0, 10, 0, 0,
                          0x3000, size_of_headers, 0, 1, 0x160, 0x40000, 0x1000, 0x100000, 0x1000, 0, 16)
    else:
        opt = struct.pack("<HBB" + "I" * 9 + "H" * 6 + "I" * 4 + "HH" + "I" * 6, 0x10B, 14, 0, text_size, data_size, 0, 0x1000,
                          0x1000, 0x2000, 0x10000, 0x1000, FILE_ALIGN, 10, 0, 10, 0, 10, 0, 0,
                          0x3000, size_of_headers, 0, 1, 0x140, 0x40000, 0x1000, 0x100000, 0x1000, 0, 16)
    opt += bytes(16 * 8)
    text_ptr = size_of_headers
    data_ptr = text_ptr + text_size
    sections = (struct.pack("<8sIIIIIIHHI", b".text", text_size, 0x1000, text_size, text_ptr, 0, 0, 0, 0, 0x60000020)
                + struct.pack("<8sIIIIIIHHI", b".data", data_size, 0x2000, data_size, data_ptr, 0, 0, 0, 0, 0xC0000040))
    head = bytes(dos) + b"PE\0\0" + fh + opt + sections
    head += bytes(size_of_headers - len(head))
    body = rng.randbytes(text_size) + rng.randbytes(data_size)
    return head + body + trailing


def pe_offsets(pe: bytes) -> tuple[int, int]:
    """(CheckSum offset, Certificate Table entry offset) of a build_pe image."""
    lfanew = struct.unpack_from("<I", pe, 0x3C)[0]
    opt = lfanew + 4 + 20
    magic = struct.unpack_from("<H", pe, opt)[0]
    return opt + 0x40, opt + (112 if magic == 0x20B else 96) + 4 * 8


def simple_authenticode(pe: bytes, alg: str) -> bytes:
    """Authenticode hash for build_pe images (sections contiguous, certificate table last):
    everything but CheckSum, the Certificate Table entry and the table, zero-padded to 8."""
    cks, sec = pe_offsets(pe)
    cert_off, cert_size = struct.unpack_from("<II", pe, sec)
    end = cert_off if cert_size else len(pe)
    data = pe[:cks] + pe[cks + 4:sec] + pe[sec + 8:end]
    if len(pe) % 8:
        data += bytes(8 - len(pe) % 8)
    return hashlib.new(alg, data).digest()


def sign_pe(pe: bytes, ca: TestCA, alg: str = "sha256") -> bytes:
    """Append an embedded Authenticode signature (WIN_CERTIFICATE rev 2.0, PKCS#7)."""
    padded = pe + bytes(-len(pe) % 8)
    digest = simple_authenticode(padded, alg)
    data = seq(oid(SPC_PE_IMAGE), seq(tlv(0x03, b"\x00"), ctx(0, ctx(2, tlv(0x80, b"")))))
    content = seq(data, seq(alg_id(alg), octets(digest)))
    blob = signed_data(SPC_INDIRECT, content, content[_header_len(content):], ca, alg)
    entry = struct.pack("<IHH", 8 + len(blob), 0x0200, 0x0002) + blob
    entry += bytes(-len(entry) % 8)
    out = bytearray(padded + entry)
    _, sec = pe_offsets(pe)
    struct.pack_into("<II", out, sec, len(padded), len(entry))
    return bytes(out)
