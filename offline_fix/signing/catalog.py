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
signature itself is verified with asn1crypto + cryptography in verify.py.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import datetime

from offline_fix.errors import CorruptInput
from offline_fix.signing import der as D
from offline_fix.signing.oids import (
    CAT_NAMEVALUE_OBJID,
    DIGEST_OIDS,
    PKCS7_SIGNED_DATA,
    SPC_CAB_DATA_OBJID,
    SPC_INDIRECT_DATA_OBJID,
    SPC_PE_IMAGE_DATAOBJ,
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
_DIGEST_BY_LENGTH = {16: "md5", 20: "sha1", 32: "sha256", 48: "sha384", 64: "sha512"}
_HEX = frozenset("0123456789ABCDEFabcdef")
_HEX_TEXT_LENGTHS = frozenset(n * 2 + extra for n in (32, 40, 64, 96, 128) for extra in (0, 2))


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
        tag = self.tag
        if self.digest is not None and tag == self.digest:  # v2: the raw hash is the tag
            return (self.digest_algorithm or _DIGEST_BY_LENGTH.get(len(tag), "unknown"), tag)
        raw = None
        if len(tag) in _HEX_TEXT_LENGTHS:  # v1: hex text in UTF-16LE, maybe NUL-terminated
            text = _utf16(tag)
            if text is not None and len(text) in (32, 40, 64, 96, 128) and set(text) <= _HEX:
                raw = binascii.unhexlify(text)
        if raw is None and len(tag) in _DIGEST_BY_LENGTH:
            raw = tag
        if raw is None:
            return None
        if self.digest is not None and len(raw) == len(self.digest):
            return (self.digest_algorithm or _DIGEST_BY_LENGTH[len(raw)], raw)
        return (_DIGEST_BY_LENGTH.get(len(raw), "unknown"), raw)

    def index_digests(self) -> list[tuple[str, bytes]]:
        """Every (algorithm, digest) under which this member can be found."""
        out = []
        if self.digest is not None:
            out.append((self.digest_algorithm or "unknown", self.digest))
        tag = self.tag_digest()
        if tag is not None and tag[1] != self.digest:
            out.append(tag)
        return out

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
    certificate_count: int

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


def _sequences(buf: bytes, start: int, end: int, field: str) -> list[tuple[int, int]]:
    """Content spans of the SEQUENCE elements filling [start, end) (a SEQUENCE OF / SET OF)."""
    out = []
    pos = start
    while pos < end:
        at = pos
        tag, s, e, pos = _tlv(buf, pos, end, field)
        if tag != D.SEQUENCE:
            raise CatalogError("element is not a SEQUENCE", offset=at, field=field, found=hex(tag))
        out.append((s, e))
    return out


def _indirect(buf: bytes, start: int, end: int) -> tuple[str, str, bytes]:
    """SET { SpcIndirectDataContent { data SpcAttributeTypeAndOptionalValue, messageDigest DigestInfo } }."""
    s, e, _ = _want(buf, start, end, D.SET, "Attribute.values")
    s, e, _ = _want(buf, s, e, D.SEQUENCE, "SpcIndirectDataContent")
    ds, de, pos = _want(buf, s, e, D.SEQUENCE, "SpcIndirectDataContent.data")
    ts, te, _ = _want(buf, ds, de, D.OID, "SpcAttributeTypeAndOptionalValue.type")
    ms, me, _ = _want(buf, pos, e, D.SEQUENCE, "DigestInfo")
    as_, ae, pos = _want(buf, ms, me, D.SEQUENCE, "DigestInfo.digestAlgorithm")
    os_, oe, _ = _want(buf, as_, ae, D.OID, "DigestInfo.digestAlgorithm.algorithm")
    gs, ge, _ = _want(buf, pos, me, D.OCTET_STRING, "DigestInfo.digest")
    return _data_type(buf[ts:te]), _digest_name(buf[os_:oe]), buf[gs:ge]


@lru_cache(maxsize=256)
def _data_type(oid: bytes) -> str:
    dotted = D.oid_to_str(oid)
    return DATA_TYPES.get(dotted, dotted)


@lru_cache(maxsize=256)
def _digest_name(oid: bytes) -> str:
    return _DIGEST_BY_OID_BYTES.get(oid) or D.oid_to_str(oid)


def _member(buf: bytes, start: int, end: int, details: bool) -> Member:
    ts, te, pos = _want(buf, start, end, D.OCTET_STRING, "TrustedSubject.subjectIdentifier")
    member = Member(tag=buf[ts:te])
    if pos >= end:
        return member
    as_, ae, _ = _want(buf, pos, end, D.SET, "TrustedSubject.subjectAttributes")
    for s, e in _sequences(buf, as_, ae, "Attribute"):
        os_, oe, vpos = _want(buf, s, e, D.OID, "Attribute.type")
        oid = buf[os_:oe]
        if oid == OID_SPC_INDIRECT_DATA:
            member.data_type, member.digest_algorithm, member.digest = _indirect(buf, vpos, e)
        elif details and oid == OID_CAT_NAMEVALUE:
            vs, ve, _ = _want(buf, vpos, e, D.SET, "Attribute.values")
            name, value = _name_value(buf, vs, ve)
            member.names[name] = value
    return member


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


def _parse(buf: bytes, details: bool) -> Catalog:
    E = CatalogError
    n = len(buf)
    if n == 0:
        raise CatalogError("empty catalog file", expected="PKCS#7 SignedData", found="0 bytes")
    if buf[0] != D.SEQUENCE:
        raise CatalogError("not a catalog (no DER SEQUENCE at offset 0)", offset=0, field="ContentInfo",
                           expected="0x30", found=hex(buf[0]))
    s, e, _ = D.expect(buf, 0, n, D.SEQUENCE, "ContentInfo", E)
    os_, oe, pos = D.expect(buf, s, e, D.OID, "ContentInfo.contentType", E)
    if buf[os_:oe] != OID_SIGNED_DATA:
        raise CatalogError("not a PKCS#7 SignedData", offset=os_, field="ContentInfo.contentType",
                           expected="1.2.840.113549.1.7.2", found=D.oid_to_str(buf[os_:oe]))
    s, e, _ = D.expect(buf, pos, e, D.CONTEXT_0, "ContentInfo.content", E)
    s, e, _ = D.expect(buf, s, e, D.SEQUENCE, "SignedData", E)
    pos = D.expect(buf, s, e, D.INTEGER, "SignedData.version", E)[2]
    ds, de, pos = D.expect(buf, pos, e, D.SET, "SignedData.digestAlgorithms", E)
    digest_algorithms = []
    for tag, as_, ae, at in D.children(buf, ds, de, "DigestAlgorithmIdentifier", E):
        os2, oe2, _ = D.expect(buf, as_, ae, D.OID, "DigestAlgorithmIdentifier.algorithm", E)
        digest_algorithms.append(_digest_name(buf[os2:oe2]))
    cs, ce, pos = D.expect(buf, pos, e, D.SEQUENCE, "SignedData.contentInfo", E)
    os_, oe, cpos = D.expect(buf, cs, ce, D.OID, "contentInfo.contentType", E)
    if buf[os_:oe] != OID_CTL:
        raise CatalogError("SignedData content is not a certificate trust list", offset=os_,
                           field="contentInfo.contentType", expected="1.3.6.1.4.1.311.10.1",
                           found=D.oid_to_str(buf[os_:oe]))
    ws, we, _ = D.expect(buf, cpos, ce, D.CONTEXT_0, "contentInfo.content", E)
    ctl_start, ctl_end, _ = D.expect(buf, ws, we, D.SEQUENCE, "CertificateTrustList", E)
    # After the content: [0] certificates, [1] crls, then signerInfos.
    cert_count = 0
    signer_count = None
    while pos < e:
        tag, xs, xe, nxt = D.header(buf, pos, e, "SignedData", E)
        if tag == D.CONTEXT_0:
            cert_count = sum(1 for _ in D.children(buf, xs, xe, "certificates", E))
        elif tag == D.SET:
            signer_count = sum(1 for _ in D.children(buf, xs, xe, "signerInfos", E))
        pos = nxt
    if signer_count is None:
        raise CatalogError("SignedData has no signerInfos", field="SignedData.signerInfos")
    return _ctl(buf, ctl_start, ctl_end, details, signer_count, digest_algorithms, cert_count)


def _ctl(buf: bytes, start: int, end: int, details: bool, signer_count: int,
         digest_algorithms: list[str], cert_count: int) -> Catalog:
    E = CatalogError
    tag, s, e, pos = D.header(buf, start, end, "CTL.version", E)
    if tag == D.INTEGER:
        tag, s, e, pos = D.header(buf, pos, end, "CTL.subjectUsage", E)
    if tag != D.SEQUENCE:
        raise CatalogError("CTL subjectUsage missing", offset=s, field="CTL.subjectUsage", found=hex(tag))
    list_id = this_update = None
    tag, s, e, nxt = D.header(buf, pos, end, "CTL.ctlThisUpdate", E)
    if tag == D.OCTET_STRING:
        list_id = buf[s:e]
        pos = nxt
        tag, s, e, nxt = D.header(buf, pos, end, "CTL.ctlThisUpdate", E)
    if tag == D.INTEGER:  # sequenceNumber
        pos = nxt
        tag, s, e, nxt = D.header(buf, pos, end, "CTL.ctlThisUpdate", E)
    if tag not in (D.UTC_TIME, D.GENERALIZED_TIME):
        raise CatalogError("CTL thisUpdate missing", offset=pos, field="CTL.ctlThisUpdate", found=hex(tag))
    this_update = D.parse_time(tag, buf[s:e], "CTL.ctlThisUpdate", E, offset=pos)
    pos = nxt
    tag, s, e, nxt = D.header(buf, pos, end, "CTL.subjectAlgorithm", E)
    if tag in (D.UTC_TIME, D.GENERALIZED_TIME):  # ctlNextUpdate
        pos = nxt
        tag, s, e, nxt = D.header(buf, pos, end, "CTL.subjectAlgorithm", E)
    if tag != D.SEQUENCE:
        raise CatalogError("CTL subjectAlgorithm missing", offset=pos, field="CTL.subjectAlgorithm", found=hex(tag))
    os_, oe, _ = D.expect(buf, s, e, D.OID, "CTL.subjectAlgorithm.algorithm", E)
    list_oid = D.oid_to_str(buf[os_:oe])
    pos = nxt
    members: list[Member] = []
    attributes: dict[str, str] = {}
    while pos < end:
        tag, s, e, nxt = D.header(buf, pos, end, "CTL", E)
        if tag == D.SEQUENCE:
            members.extend(_member(buf, ms, me, details) for ms, me in _sequences(buf, s, e, "TrustedSubject"))
        elif tag == D.CONTEXT_0 and details:
            attributes = _extensions(buf, s, e)
        pos = nxt
    return Catalog(
        signed=signer_count > 0, signer_count=signer_count, digest_algorithms=digest_algorithms,
        member_list_type=MEMBER_LIST_TYPES.get(list_oid, list_oid), this_update=this_update,
        list_identifier=list_id, members=members, attributes=attributes, certificate_count=cert_count,
    )


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
