"""Windows catalog (.cat) files: a PKCS#7 SignedData whose content is a CertificateTrustList.

Structure (wincrypt.h / MS-CAT conventions; RFC 2315 for the envelope)::

    ContentInfo { contentType signedData, [0] SignedData {
        version, digestAlgorithms, contentInfo { szOID_CTL 1.3.6.1.4.1.311.10.1, [0] CTL },
        [0] certificates OPTIONAL, [1] crls OPTIONAL, signerInfos SET } }
    CertificateTrustList ::= SEQUENCE {
        version INTEGER DEFAULT v1, subjectUsage SEQUENCE OF OID (1.3.6.1.4.1.311.12.1.1),
        listIdentifier OCTET STRING OPTIONAL, sequenceNumber INTEGER OPTIONAL,
        ctlThisUpdate Time, ctlNextUpdate Time OPTIONAL,
        subjectAlgorithm AlgorithmIdentifier  -- catalog_list_member (.12.1.2) or _v2 (.12.1.3)
        trustedSubjects SEQUENCE OF TrustedSubject OPTIONAL,
        ctlExtensions [0] EXPLICIT Extensions OPTIONAL }
    TrustedSubject ::= SEQUENCE { subjectIdentifier OCTET STRING, subjectAttributes SET OF Attribute }

Each member's SpcIndirectData attribute (1.3.6.1.4.1.311.2.1.4) holds the digest Windows looks
up (Authenticode image hash for PE files, flat hash otherwise). In v1 (SHA1) catalogs the member
tag is the uppercase hex of that hash as UTF-16LE text; in v2 catalogs the tag is the raw hash,
and SHA1 members of dual-hash catalogs may carry only the tag (no SpcIndirectData). Both the
attribute digest and a tag that is a hash are indexed.

This parser walks the DER directly (der.py) because indexing reads thousands of catalogs; the
signature itself is verified in verify.py. Two shortcuts keep its results: the common head of a
catalog is matched by one regular expression (``_common_head``, else ``_head``/``_ctl_fields``
walk it), and catalog_scan.py memoizes ``_member`` over member shapes for the index.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import datetime
from typing import Callable

from offline_fix.errors import CorruptInput
from offline_fix.signing import der as D
from offline_fix.signing.oids import (
    CAT_NAMEVALUE_OBJID,
    DIGEST_OIDS,
    PKCS7_SIGNED_DATA,
    SPC_CAB_DATA_OBJID,
    SPC_INDIRECT_DATA_OBJID,
    SPC_PE_IMAGE_DATAOBJ,
    SZ_OID_CATALOG_LIST,
    SZ_OID_CATALOG_LIST_MEMBER,
    SZ_OID_CATALOG_LIST_MEMBER2,
    SZ_OID_CTL,
)

OID_SIGNED_DATA = D.oid_bytes(PKCS7_SIGNED_DATA)
OID_CTL = D.oid_bytes(SZ_OID_CTL)
OID_SPC_INDIRECT_DATA = D.oid_bytes(SPC_INDIRECT_DATA_OBJID)
OID_CAT_NAMEVALUE = D.oid_bytes(CAT_NAMEVALUE_OBJID)
MEMBER_LIST_TYPES = {
    SZ_OID_CATALOG_LIST_MEMBER: "catalog_list_member",
    SZ_OID_CATALOG_LIST_MEMBER2: "catalog_list_member_v2",
}
DATA_TYPES = {SPC_PE_IMAGE_DATAOBJ: "pe-image", SPC_CAB_DATA_OBJID: "flat"}
_DIGEST_BY_OID_BYTES = {D.oid_bytes(k): v for k, v in DIGEST_OIDS.items()}
# subjectUsage: SEQUENCE { OID 1.3.6.1.4.1.311.12.1.1 (catalog list) }, as every catalog has it
_SUBJECT_USAGE = (bytes([D.SEQUENCE, 2 + len(D.oid_bytes(SZ_OID_CATALOG_LIST))])
                  + bytes([D.OID, len(D.oid_bytes(SZ_OID_CATALOG_LIST))]) + D.oid_bytes(SZ_OID_CATALOG_LIST))
_DIGEST_BY_LENGTH = {16: "md5", 20: "sha1", 32: "sha256", 48: "sha384", 64: "sha512"}
_HEX = frozenset("0123456789ABCDEFabcdef")
_HEX_TEXT_LENGTHS = frozenset(n * 2 + extra for n in (32, 40, 64, 96, 128) for extra in (0, 2))


# Called with (buf, start, end) for each member list (SEQUENCE OF TrustedSubject contents).
MemberScan = Callable[[bytes, int, int], None]


class CatalogError(CorruptInput):
    """A .cat file that is empty, truncated or not a catalog."""


@dataclass
class Member:
    """One catalog entry (TrustedSubject)."""

    tag: bytes                         # subjectIdentifier as stored
    digest: bytes | None = None        # from SpcIndirectData: what Windows matches
    digest_algorithm: str | None = None
    data_type: str | None = None       # "pe-image", "flat" or the OID
    names: dict[str, str] = field(default_factory=dict)  # CAT_NAMEVALUE: File, OSAttr ...

    @property
    def tag_text(self) -> str:
        """The tag as Windows shows it: UTF-16 text (v1) or uppercase hex (v2 raw hashes)."""
        text = _utf16(self.tag)
        if text is not None and text.isprintable():
            return text
        return self.tag.hex().upper()

    def tag_digest(self) -> tuple[str, bytes] | None:
        """(algorithm, hash) when the tag itself is a hash, as raw bytes or hex text."""
        return tag_digest(self.tag, self.digest, self.digest_algorithm)

    def index_digests(self) -> list[tuple[str, bytes]]:
        """Every (algorithm, digest) under which this member can be found."""
        return index_digests(self.tag, self.digest, self.digest_algorithm)

    def to_dict(self) -> dict:
        return {"tag": self.tag_text, "digest": self.digest.hex() if self.digest else None,
                "digest_algorithm": self.digest_algorithm, "data_type": self.data_type,
                "names": dict(self.names)}


@dataclass
class Catalog:
    signed: bool                     # the SignedData has at least one SignerInfo
    signer_count: int
    digest_algorithms: list[str]     # SignedData.digestAlgorithms
    member_list_type: str            # catalog_list_member, catalog_list_member_v2 or the OID
    this_update: datetime | None
    list_identifier: bytes | None
    members: list[Member]
    attributes: dict[str, str]       # catalog-level CAT_NAMEVALUE extensions (OS, HWID ...)

    def index_digests(self) -> list[tuple[str, bytes]]:
        out = []
        for m in self.members:
            out.extend(m.index_digests())
        return out


def _utf16(raw: bytes) -> str | None:
    if len(raw) % 2 or not raw:
        return None
    try:
        return raw.decode("utf-16-le").rstrip("\0")
    except UnicodeDecodeError:
        return None


def tag_digest(tag: bytes, digest: bytes | None, algorithm: str | None) -> tuple[str, bytes] | None:
    """(algorithm, hash) when a member tag is itself a hash, as raw bytes or hex text."""
    if digest is not None and tag == digest:  # v2: the raw hash is the tag
        return (algorithm or _DIGEST_BY_LENGTH.get(len(tag), "unknown"), tag)
    raw = None
    if len(tag) in _HEX_TEXT_LENGTHS:  # v1: hex text in UTF-16LE, maybe NUL-terminated
        text = _utf16(tag)
        if text is not None and len(text) in (32, 40, 64, 96, 128) and set(text) <= _HEX:
            raw = binascii.unhexlify(text)
    if raw is None and len(tag) in _DIGEST_BY_LENGTH:
        raw = tag
    if raw is None:
        return None
    if digest is not None and len(raw) == len(digest):
        return (algorithm or _DIGEST_BY_LENGTH[len(raw)], raw)
    return (_DIGEST_BY_LENGTH.get(len(raw), "unknown"), raw)


def raw_tag_algorithm(length: int) -> str | None:
    """For a member without SpcIndirectData: the algorithm of a tag of ``length`` bytes when
    tag_digest can only read it as a raw hash (not as hex text)."""
    return None if length in _HEX_TEXT_LENGTHS else _DIGEST_BY_LENGTH.get(length)


def index_digests(tag: bytes, digest: bytes | None, algorithm: str | None) -> list[tuple[str, bytes]]:
    """Every (algorithm, digest) under which a member (tag, SpcIndirectData digest) is found."""
    out = []
    if digest is not None:
        out.append((algorithm or "unknown", digest))
    found = tag_digest(tag, digest, algorithm)
    if found is not None and found[1] != digest:
        out.append(found)
    return out


def _name_value(buf: bytes, start: int, end: int) -> tuple[str, str]:
    """CAT_NAMEVALUE ::= SEQUENCE { tag BMPString, flags INTEGER, value OCTET STRING (UTF-16LE) }."""
    E = CatalogError
    s, e, _ = D.expect(buf, start, end, D.SEQUENCE, "CAT_NAMEVALUE", E)
    ts, te, pos = D.expect(buf, s, e, D.BMP_STRING, "CAT_NAMEVALUE.tag", E)
    pos = D.expect(buf, pos, e, D.INTEGER, "CAT_NAMEVALUE.flags", E)[2]
    vs, ve, _ = D.expect(buf, pos, e, D.OCTET_STRING, "CAT_NAMEVALUE.value", E)
    name = buf[ts:te].decode("utf-16-be", errors="replace")
    value = _utf16(buf[vs:ve])
    return name, value if value is not None else buf[vs:ve].hex()


def _tlv(buf: bytes, pos: int, end: int, field: str) -> tuple[int, int, int, int]:
    """der.header with an inlined fast path for the short definite form (most catalog elements)."""
    if pos + 2 <= end:
        tag = buf[pos]
        length = buf[pos + 1]
        if length < 0x80 and tag & 0x1F != 0x1F:
            stop = pos + 2 + length
            if stop <= end:
                return tag, pos + 2, stop, stop
        elif length == 0x81 and pos + 3 <= end and tag & 0x1F != 0x1F:
            stop = pos + 3 + buf[pos + 2]
            if stop <= end:
                return tag, pos + 3, stop, stop
        elif length == 0x82 and pos + 4 <= end and tag & 0x1F != 0x1F:
            stop = pos + 4 + (buf[pos + 2] << 8 | buf[pos + 3])
            if stop <= end:
                return tag, pos + 4, stop, stop
    return D.header(buf, pos, end, field, CatalogError)  # long forms, BER, and every error


def _want(buf: bytes, pos: int, end: int, tag: int, field: str) -> tuple[int, int, int]:
    got, start, stop, nxt = _tlv(buf, pos, end, field)
    if got != tag:
        raise CatalogError("unexpected ASN.1 element", offset=pos, field=field, expected=hex(tag), found=hex(got))
    return start, stop, nxt


def _sequences(buf: bytes, start: int, end: int, field: str) -> list[tuple[int, int, int]]:
    """(content start, content end, element start) of the SEQUENCEs filling [start, end)."""
    out = []
    pos = start
    while pos < end:
        at = pos
        tag, s, e, pos = _tlv(buf, pos, end, field)
        if tag != D.SEQUENCE:
            raise CatalogError("element is not a SEQUENCE", offset=at, field=field, found=hex(tag))
        out.append((s, e, at))
    return out


def _indirect(buf: bytes, start: int, end: int) -> tuple[str, str, int, int]:
    """SET { SpcIndirectDataContent { data SpcAttributeTypeAndOptionalValue, messageDigest DigestInfo } }."""
    s, e, _ = _want(buf, start, end, D.SET, "Attribute.values")
    s, e, _ = _want(buf, s, e, D.SEQUENCE, "SpcIndirectDataContent")
    ds, de, pos = _want(buf, s, e, D.SEQUENCE, "SpcIndirectDataContent.data")
    ts, te, _ = _want(buf, ds, de, D.OID, "SpcAttributeTypeAndOptionalValue.type")
    ms, me, _ = _want(buf, pos, e, D.SEQUENCE, "DigestInfo")
    as_, ae, pos = _want(buf, ms, me, D.SEQUENCE, "DigestInfo.digestAlgorithm")
    os_, oe, _ = _want(buf, as_, ae, D.OID, "DigestInfo.digestAlgorithm.algorithm")
    gs, ge, _ = _want(buf, pos, me, D.OCTET_STRING, "DigestInfo.digest")
    return _data_type(buf[ts:te]), _digest_name(buf[os_:oe]), gs, ge  # digest = buf[gs:ge]


@lru_cache(maxsize=256)
def _data_type(oid: bytes) -> str:
    dotted = D.oid_to_str(oid)
    return DATA_TYPES.get(dotted, dotted)


@lru_cache(maxsize=256)
def _list_type(oid: bytes) -> str:
    dotted = D.oid_to_str(oid)
    return MEMBER_LIST_TYPES.get(dotted, dotted)


@lru_cache(maxsize=256)
def _digest_name(oid: bytes) -> str:
    return _DIGEST_BY_OID_BYTES.get(oid) or D.oid_to_str(oid)


def _member(buf: bytes, start: int, end: int, details: bool, layout: "MemberLayout | None" = None) -> Member:
    """Parse one TrustedSubject. With ``layout`` (and ``details`` False), also record which of
    its bytes this function never looks at: catalog_scan.py learns member shapes from that."""
    ts, te, pos = _want(buf, start, end, D.OCTET_STRING, "TrustedSubject.subjectIdentifier")
    member = Member(tag=buf[ts:te])
    if layout is not None:
        layout.tag = (ts, te)
    if pos >= end:
        return member
    as_, ae, _ = _want(buf, pos, end, D.SET, "TrustedSubject.subjectAttributes")
    for s, e, at in _sequences(buf, as_, ae, "Attribute"):
        os_, oe, vpos = _want(buf, s, e, D.OID, "Attribute.type")
        oid = buf[os_:oe]
        if oid == OID_SPC_INDIRECT_DATA:
            member.data_type, member.digest_algorithm, gs, ge = _indirect(buf, vpos, e)
            member.digest = buf[gs:ge]
            if layout is not None:
                layout.digest = (gs, ge)
        elif details and oid == OID_CAT_NAMEVALUE:
            vs, ve, _ = _want(buf, vpos, e, D.SET, "Attribute.values")
            name, value = _name_value(buf, vs, ve)
            member.names[name] = value
        elif layout is not None:
            layout.skipped.append((vpos, e))
        if layout is not None and buf[at + 1] == 0x80:  # an indefinite length is walked into
            layout.definite = False
    return member


@dataclass
class MemberLayout:
    """Where _member found a member's variable parts (absolute offsets into the buffer)."""

    tag: tuple[int, int] = (0, 0)
    digest: tuple[int, int] | None = None
    skipped: list[tuple[int, int]] = field(default_factory=list)  # attribute bodies not read
    definite: bool = True


def _extensions(buf: bytes, start: int, end: int) -> dict[str, str]:
    """ctlExtensions [0] EXPLICIT SEQUENCE OF Extension; CAT_NAMEVALUE ones become attributes."""
    E = CatalogError
    out: dict[str, str] = {}
    s, e, _ = D.expect(buf, start, end, D.SEQUENCE, "ctlExtensions", E)
    for tag, xs, xe, at in D.children(buf, s, e, "Extension", E):
        if tag != D.SEQUENCE:
            raise CatalogError("extension is not a SEQUENCE", offset=at, field="Extension", found=hex(tag))
        os_, oe, pos = D.expect(buf, xs, xe, D.OID, "Extension.extnID", E)
        tag2, vs, ve, nxt = D.header(buf, pos, xe, "Extension.critical", E)
        if tag2 == D.BOOLEAN:
            tag2, vs, ve, nxt = D.header(buf, nxt, xe, "Extension.extnValue", E)
        if tag2 != D.OCTET_STRING:
            raise CatalogError("extension value is not an OCTET STRING", offset=pos, field="Extension.extnValue")
        if buf[os_:oe] == OID_CAT_NAMEVALUE:
            name, value = _name_value(buf, vs, ve)
            out[name] = value
    return out


def parse_catalog(data: bytes, *, path: str | None = None, details: bool = True) -> Catalog:
    """Parse a catalog's envelope and CTL. ``details=False`` skips name/value attributes.

    Raises CatalogError for empty, truncated or non-catalog input; an unsigned catalog parses
    (``signed`` is False) and is reported as such by the callers.
    """
    try:
        return _parse(bytes(data), details)
    except CatalogError as e:
        if e.path is None:
            e.path = path
        raise


def _parse(buf: bytes, details: bool, scan: MemberScan | None = None) -> Catalog | tuple[bool, str]:
    """The whole catalog; with ``scan``, each member list is handed to it instead of _member
    and only (signed, member list type) is returned."""
    n = len(buf)
    if n == 0:
        raise CatalogError("empty catalog file", expected="PKCS#7 SignedData", found="0 bytes")
    if buf[0] != D.SEQUENCE:
        raise CatalogError("not a catalog (no DER SEQUENCE at offset 0)", offset=0, field="ContentInfo",
                           expected="0x30", found=hex(buf[0]))
    head = _common_head(buf, n)
    if head is None:
        e, pos, digest_algorithms, ctl_start, ctl_end = _head(buf, n)
    else:
        e, pos, digest_algorithms, ctl_end, fields = head
    signer_count = _signer_count(buf, pos, e)
    if head is None:
        list_id, this_update, list_type, pos = _ctl_fields(buf, ctl_start, ctl_end)
    else:
        list_id, (time_tag, time_at, time_raw), list_type, pos, member_list = fields
        this_update = _this_update(time_tag, time_raw, time_at)
        if member_list is not None and scan is not None:  # the regex found its header already
            scan(buf, *member_list)
            pos = member_list[1]
    members: list[Member] = []
    attributes: dict[str, str] = {}
    while pos < ctl_end:
        tag, s, e, nxt = _tlv(buf, pos, ctl_end, "CTL")
        if tag == D.SEQUENCE:
            if scan is not None:
                scan(buf, s, e)
            else:
                members.extend(_member(buf, ms, me, details) for ms, me, _ in _sequences(buf, s, e, "TrustedSubject"))
        elif tag == D.CONTEXT_0 and details:
            attributes = _extensions(buf, s, e)
        pos = nxt
    if scan is not None:
        return signer_count > 0, list_type
    return Catalog(
        signed=signer_count > 0, signer_count=signer_count, digest_algorithms=digest_algorithms,
        member_list_type=list_type, this_update=this_update,
        list_identifier=list_id, members=members, attributes=attributes,
    )


def _signer_count(buf: bytes, pos: int, end: int) -> int:
    """After SignedData's contentInfo: [0] certificates and [1] crls (their contents are
    verify.py's business), then signerInfos, whose SignerInfos are counted."""
    count = None
    while pos < end:
        tag, s, e, pos = _tlv(buf, pos, end, "SignedData")
        if tag == D.SET:
            count = _count(buf, s, e, "signerInfos")
    if count is None:
        raise CatalogError("SignedData has no signerInfos", field="SignedData.signerInfos")
    return count


def _head(buf: bytes, n: int) -> tuple[int, int, list[str], int, int]:
    """ContentInfo down to the CTL. Returns (SignedData end, offset after its contentInfo,
    digestAlgorithms, CTL content start, CTL content end)."""
    s, e, _ = _want(buf, 0, n, D.SEQUENCE, "ContentInfo")
    os_, oe, pos = _want(buf, s, e, D.OID, "ContentInfo.contentType")
    if buf[os_:oe] != OID_SIGNED_DATA:
        raise CatalogError("not a PKCS#7 SignedData", offset=os_, field="ContentInfo.contentType",
                           expected="1.2.840.113549.1.7.2", found=D.oid_to_str(buf[os_:oe]))
    s, e, _ = _want(buf, pos, e, D.CONTEXT_0, "ContentInfo.content")
    s, e, _ = _want(buf, s, e, D.SEQUENCE, "SignedData")
    pos = _want(buf, s, e, D.INTEGER, "SignedData.version")[2]
    ds, de, pos = _want(buf, pos, e, D.SET, "SignedData.digestAlgorithms")
    digest_algorithms = []
    while ds < de:
        _, as_, ae, ds = _tlv(buf, ds, de, "DigestAlgorithmIdentifier")
        os2, oe2, _ = _want(buf, as_, ae, D.OID, "DigestAlgorithmIdentifier.algorithm")
        digest_algorithms.append(_digest_name(buf[os2:oe2]))
    cs, ce, pos = _want(buf, pos, e, D.SEQUENCE, "SignedData.contentInfo")
    os_, oe, cpos = _want(buf, cs, ce, D.OID, "contentInfo.contentType")
    if buf[os_:oe] != OID_CTL:
        raise CatalogError("SignedData content is not a certificate trust list", offset=os_,
                           field="contentInfo.contentType", expected="1.3.6.1.4.1.311.10.1",
                           found=D.oid_to_str(buf[os_:oe]))
    ws, we, _ = _want(buf, cpos, ce, D.CONTEXT_0, "contentInfo.content")
    ctl_start, ctl_end, _ = _want(buf, ws, we, D.SEQUENCE, "CertificateTrustList")
    return e, pos, digest_algorithms, ctl_start, ctl_end


def _ctl_fields(buf: bytes, start: int, end: int) -> tuple[bytes | None, datetime, str, int]:
    """CTL version .. subjectAlgorithm: (listIdentifier, thisUpdate, member list type, next offset)."""
    tag, s, e, pos = _tlv(buf, start, end, "CTL.version")
    if tag == D.INTEGER:
        tag, s, e, pos = _tlv(buf, pos, end, "CTL.subjectUsage")
    if tag != D.SEQUENCE:
        raise CatalogError("CTL subjectUsage missing", offset=s, field="CTL.subjectUsage", found=hex(tag))
    list_id = None
    tag, s, e, nxt = _tlv(buf, pos, end, "CTL.ctlThisUpdate")
    if tag == D.OCTET_STRING:
        list_id = buf[s:e]
        pos = nxt
        tag, s, e, nxt = _tlv(buf, pos, end, "CTL.ctlThisUpdate")
    if tag == D.INTEGER:  # sequenceNumber
        pos = nxt
        tag, s, e, nxt = _tlv(buf, pos, end, "CTL.ctlThisUpdate")
    if tag not in (D.UTC_TIME, D.GENERALIZED_TIME):
        raise CatalogError("CTL thisUpdate missing", offset=pos, field="CTL.ctlThisUpdate", found=hex(tag))
    this_update = _this_update(tag, buf[s:e], pos)
    pos = nxt
    tag, s, e, nxt = _tlv(buf, pos, end, "CTL.subjectAlgorithm")
    if tag in (D.UTC_TIME, D.GENERALIZED_TIME):  # ctlNextUpdate
        pos = nxt
        tag, s, e, nxt = _tlv(buf, pos, end, "CTL.subjectAlgorithm")
    if tag != D.SEQUENCE:
        raise CatalogError("CTL subjectAlgorithm missing", offset=pos, field="CTL.subjectAlgorithm", found=hex(tag))
    os_, oe, _ = _want(buf, s, e, D.OID, "CTL.subjectAlgorithm.algorithm")
    return list_id, this_update, _list_type(buf[os_:oe]), nxt


def _count(buf: bytes, start: int, end: int, field: str) -> int:
    """Number of elements filling [start, end) (each header checked)."""
    count = 0
    while start < end:
        start = _tlv(buf, start, end, field)[3]
        count += 1
    return count


@lru_cache(maxsize=1024)
def _time(tag: int, raw: bytes) -> datetime:
    """D.parse_time, memoized: a CatRoot's catalogs share a few thisUpdate values."""
    return D.parse_time(tag, raw, "CTL.ctlThisUpdate", CatalogError)


def _this_update(tag: int, raw: bytes, offset: int) -> datetime:
    try:
        return _time(tag, raw)
    except CatalogError as exc:
        exc.offset = offset
        raise


# --- the common head, in one regular expression ---------------------------------------------
# Nearly every catalog starts the same way: fixed OIDs, one known digest algorithm, a 16-byte
# list identifier, a UTCTime or GeneralizedTime, a catalog member list type; only the lengths
# of the six elements enclosing the CTL vary. _common_head matches that shape and then checks
# what _head and _ctl_fields would check (each element ends within its parent); anything else
# (other forms, optional fields, broken lengths) goes through _head and _ctl_fields.

def _alternatives(items: dict[bytes, object]) -> bytes:
    return b"(" + b"|".join(re.escape(k) for k in sorted(items, key=len, reverse=True)) + b")"


def _algorithm_sets() -> dict[bytes, list[str]]:
    out: dict[bytes, list[str]] = {bytes([D.SET, 0]): []}
    for oid, name in _DIGEST_BY_OID_BYTES.items():
        ident = bytes([D.OID, len(oid)]) + oid
        for alg in (ident + b"\x05\x00", ident):  # parameters NULL or absent
            seq = bytes([D.SEQUENCE, len(alg)]) + alg
            out[bytes([D.SET, len(seq)]) + seq] = [name]
    return out


def _subject_algorithms() -> dict[bytes, str]:
    out = {}
    for dotted, name in MEMBER_LIST_TYPES.items():
        ident = bytes([D.OID, len(D.oid_bytes(dotted))]) + D.oid_bytes(dotted)
        for alg in (ident + b"\x05\x00", ident):
            out[bytes([D.SEQUENCE, len(alg)]) + alg] = name
    return out


_ALGORITHM_SETS = _algorithm_sets()
_SUBJECT_ALGORITHMS = _subject_algorithms()
_LEN = rb"([\x00-\x7f]|\x81.|\x82..|\x83...)"  # a definite length, short or 1..3 bytes long
_LENGTH_MASK = (0, 0x7F, 0xFF, 0xFFFF, 0xFFFFFF)  # by the number of length octets _LEN matched
_HEAD = re.compile(
    rb"\x30" + _LEN + re.escape(bytes([D.OID, len(OID_SIGNED_DATA)]) + OID_SIGNED_DATA)  # 1 ContentInfo
    + rb"\xa0" + _LEN + rb"\x30" + _LEN + rb"\x02\x01."                  # 2 [0], 3 SignedData, version
    + _alternatives(_ALGORITHM_SETS)                                      # 4 digestAlgorithms
    + rb"\x30" + _LEN + re.escape(bytes([D.OID, len(OID_CTL)]) + OID_CTL)  # 5 contentInfo
    + rb"\xa0" + _LEN + rb"\x30" + _LEN                                  # 6 [0], 7 CTL
    + rb"(?:\x02\x01.)?"                                                   # CTL version
    + re.escape(_SUBJECT_USAGE)                                           # subjectUsage
    + rb"\x04\x10(.{16})"                                                  # 8 listIdentifier
    + rb"(\x17\x0d.{13}|\x18\x0f.{15})"                                     # 9 ctlThisUpdate
    + _alternatives(_SUBJECT_ALGORITHMS)                                  # 10 subjectAlgorithm
    + rb"(?:\x30" + _LEN + rb")?",                                         # 11 trustedSubjects
    re.DOTALL)


def _head_match(buf: bytes, n: int) -> tuple | None:
    """The common-head match and the ends it implies, when every element ends within its
    parent (what _want checks): (match, SignedData end, contentInfo end, CTL end, member list
    content start, its end (-1, -1: the regex found no member list header)). Else None."""
    m = _HEAD.match(buf)
    if m is None:
        return None
    # each element ends at the end of its length octets + the length they hold: the octets read
    # as one number, without the first one's 0x81 .. 0x83 when long (_LENGTH_MASK)
    l1, l2, l3, l5, l6, l7, l11 = m.group(1, 2, 3, 5, 6, 7, 11)  # ContentInfo .. CTL, member list
    end, value, mask = m.end, int.from_bytes, _LENGTH_MASK
    info_end = end(1) + (value(l1, "big") & mask[len(l1)])
    wrap_end = end(2) + (value(l2, "big") & mask[len(l2)])
    sd_end = end(3) + (value(l3, "big") & mask[len(l3)])
    content_info_end = end(5) + (value(l5, "big") & mask[len(l5)])
    ctl_wrap_end = end(6) + (value(l6, "big") & mask[len(l6)])
    ctl_end = end(7) + (value(l7, "big") & mask[len(l7)])
    if not end(10) <= ctl_end <= ctl_wrap_end <= content_info_end <= sd_end <= wrap_end <= info_end <= n:
        return None
    if l11 is None:
        return m, sd_end, content_info_end, ctl_end, -1, -1
    list_start = end(11)
    list_end = list_start + (value(l11, "big") & mask[len(l11)])
    if list_end > ctl_end:
        return None
    return m, sd_end, content_info_end, ctl_end, list_start, list_end


def _common_head(buf: bytes, n: int) -> tuple | None:
    """What _head and _ctl_fields return for the common shape, else None.

    Returns (SignedData end, offset after contentInfo, digestAlgorithms, CTL end,
    (listIdentifier, (time tag, time offset, time contents), member list type, offset after
    subjectAlgorithm, (member list content start, end) or None)).
    """
    head = _head_match(buf, n)
    if head is None:
        return None
    m, sd_end, content_info_end, ctl_end, list_start, list_end = head
    time_at, time_end = m.span(9)
    fields = (m.group(8), (buf[time_at], time_at, buf[time_at + 2:time_end]),
              _SUBJECT_ALGORITHMS[m.group(10)], m.end(10), (list_start, list_end) if list_start >= 0 else None)
    return sd_end, content_info_end, list(_ALGORITHM_SETS[m.group(4)]), ctl_end, fields


def index_head(buf: bytes) -> tuple[bool, str, int, int] | None:
    """For the catalog index: (signed, member list type, member list content start, end) of a
    catalog of the common shape whose CTL holds exactly one member list, as ``_parse`` would
    find them; None for any other shape (``_parse`` then walks it). CatalogError as _parse
    raises it (the message may differ: callers re-parse for it)."""
    head = _head_match(buf, len(buf))
    if head is None or head[4] < 0:
        return None
    m, sd_end, pos, ctl_end, list_start, list_end = head
    signed = _signer_count(buf, pos, sd_end) > 0
    time_at, time_end = m.span(9)
    _this_update(buf[time_at], buf[time_at + 2:time_end], time_at)
    pos = list_end
    while pos < ctl_end:  # the CTL's other fields (extensions): valid, and no second member list
        tag, _, _, pos = _tlv(buf, pos, ctl_end, "CTL")
        if tag == D.SEQUENCE:
            return None
    return signed, _SUBJECT_ALGORITHMS[m.group(10)], list_start, list_end


def read_catalog(path: str, *, details: bool = True, max_size: int = 256 << 20) -> Catalog:
    """Read and parse a catalog file (catalogs are read whole; ``max_size`` bounds that)."""
    import os

    from offline_fix.errors import NotFound, PermissionDenied

    try:
        size = os.path.getsize(path)
        if size > max_size:
            raise CatalogError("catalog too large", path=path, expected=f"<= {max_size}", found=size)
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as e:
        raise NotFound("catalog not found", path=path) from e
    except PermissionError as e:
        raise PermissionDenied("cannot read catalog", path=path) from e
    return parse_catalog(data, path=path, details=details)
