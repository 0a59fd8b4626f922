"""PKCS#7 SignedData as Authenticode and catalogs use it, parsed with asn1crypto.

References: RFC 2315 (PKCS#7 v1.5: SignedData, SignerInfo, authenticated attributes),
Authenticode_PE.docx (SpcIndirectDataContent, nested signatures), RFC 3161 (TSTInfo),
https://learn.microsoft.com/en-us/windows/win32/seccrypto/cryptography-functions (OIDs).

``parse_signed_data`` turns DER into plain dataclasses of bytes, strings and datetimes. asn1crypto
parses lazily, so every field is read inside this module and any decoding failure becomes a
``SignatureError`` here, never later. Verification (hashes, keys, chains) is in verify.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from asn1crypto import algos, cms, core, tsp

from offline_fix.errors import CorruptInput
from offline_fix.signing import der as der_

from offline_fix.signing.oids import (
    DIGEST_OIDS,
    ID_CT_TSTINFO,
    PKCS7_SIGNED_DATA,
    PKCS9_CONTENT_TYPE,
    PKCS9_COUNTER_SIGNATURE,
    PKCS9_MESSAGE_DIGEST,
    PKCS9_SIGNING_TIME,
    SPC_INDIRECT_DATA_OBJID,
    SPC_NESTED_SIGNATURE_OBJID,
    SZ_OID_RFC3161_COUNTERSIGN,
)

MAX_NESTING = 4  # nested signatures inside nested signatures, at most
_ASN1_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError)


class SignatureError(CorruptInput):
    """A PKCS#7 SignedData (embedded signature or catalog envelope) that cannot be parsed."""


# --- ASN.1 structures asn1crypto does not define (Authenticode_PE.docx) -----------------------

class SpcAttributeTypeAndOptionalValue(core.Sequence):
    _fields = [("type", core.ObjectIdentifier), ("value", core.Any, {"optional": True})]


class DigestInfo(core.Sequence):
    _fields = [("digest_algorithm", algos.DigestAlgorithm), ("digest", core.OctetString)]


class SpcIndirectDataContent(core.Sequence):
    _fields = [("data", SpcAttributeTypeAndOptionalValue), ("message_digest", DigestInfo)]


# --- parsed, plain results -----------------------------------------------------------------

@dataclass(frozen=True)
class IndirectData:
    """The signed statement "the object of type ``data_type`` has digest ``digest``"."""

    data_type: str
    digest_algorithm: str
    digest: bytes


@dataclass
class SignerInfo:
    version: str                  # "v1" (issuer and serial) or "v3" (subject key id)
    issuer_der: bytes | None      # issuerAndSerialNumber.issuer, as encoded
    serial: int | None
    subject_key_id: bytes | None  # CMS v3 signer identifier
    digest_algorithm: str         # name such as "sha256" (or the OID when unknown)
    signature_algorithm: str      # OID
    signature: bytes
    signed_attrs_der: bytes | None  # DER of the attributes re-tagged as SET OF, as signed
    message_digest: bytes | None
    content_type: str | None
    signing_time: datetime | None
    timestamp: datetime | None      # counterSignature or RFC 3161 time, unverified
    timestamp_kind: str | None      # "countersignature" or "rfc3161"
    nested: list["SignedData"] = field(default_factory=list)


@dataclass
class SignedData:
    content_type: str
    content: bytes          # the contents octets of the content (what messageDigest covers)
    content_tlv: bytes      # the whole encoded content element
    digest_algorithms: list[str]
    certificates: list[bytes]  # DER of each X.509 certificate carried
    signers: list[SignerInfo]
    indirect: IndirectData | None  # for SPC_INDIRECT_DATA content

    @property
    def signed(self) -> bool:
        return bool(self.signers)


def _digest_name(alg) -> str:
    oid = alg["algorithm"].dotted
    return DIGEST_OIDS.get(oid, oid)


def _attr_values(attrs, oid: str) -> list:
    if attrs is None or isinstance(attrs, core.Void):
        return []
    out = []
    for attr in attrs:
        if attr["type"].dotted == oid:
            out.extend(attr["values"])
    return out


def _timestamp(unsigned) -> tuple[datetime | None, str | None]:
    """The time asserted by a countersignature or an RFC 3161 token (signature not checked)."""
    for value in _attr_values(unsigned, PKCS9_COUNTER_SIGNATURE):
        counter = cms.SignerInfo.load(value.dump())
        for t in _attr_values(counter["signed_attrs"], PKCS9_SIGNING_TIME):
            return t.native, "countersignature"
    for value in _attr_values(unsigned, SZ_OID_RFC3161_COUNTERSIGN):
        token = cms.ContentInfo.load(value.dump())
        encap = token["content"]["encap_content_info"]
        if encap["content_type"].dotted != ID_CT_TSTINFO:
            continue
        inner = encap["content"].parsed
        raw = inner.contents if isinstance(inner, core.OctetString) or inner.tag == 4 else inner.dump()
        return tsp.TSTInfo.load(raw)["gen_time"].native, "rfc3161"
    return None, None


def _signer(si, depth: int) -> SignerInfo:
    sid = si["sid"]
    issuer_der = serial = ski = None
    if sid.name == "issuer_and_serial_number":
        issuer_der = sid.chosen["issuer"].dump()
        serial = sid.chosen["serial_number"].native
    else:
        ski = sid.chosen.native
    signed = si["signed_attrs"]
    signed_der = message_digest = content_type = signing_time = None
    if not isinstance(signed, core.Void) and len(signed):
        raw = signed.dump()
        signed_der = b"\x31" + raw[1:]  # [0] IMPLICIT -> SET OF for the signature (RFC 2315 9.3)
        values = _attr_values(signed, PKCS9_MESSAGE_DIGEST)
        message_digest = values[0].native if values else None
        values = _attr_values(signed, PKCS9_CONTENT_TYPE)
        content_type = values[0].dotted if values else None
        values = _attr_values(signed, PKCS9_SIGNING_TIME)
        signing_time = values[0].native if values else None
    unsigned = si["unsigned_attrs"]
    stamp, kind = _timestamp(unsigned)
    nested = []
    for value in _attr_values(unsigned, SPC_NESTED_SIGNATURE_OBJID):
        if depth >= MAX_NESTING:
            raise SignatureError("nested signatures too deep", field="SpcNestedSignature",
                                 expected=f"<= {MAX_NESTING}")
        nested.append(_parse(value.dump(), depth + 1))
    return SignerInfo(
        version=str(si["version"].native),
        issuer_der=issuer_der, serial=serial, subject_key_id=ski,
        digest_algorithm=_digest_name(si["digest_algorithm"]),
        signature_algorithm=si["signature_algorithm"]["algorithm"].dotted,
        signature=si["signature"].native, signed_attrs_der=signed_der, message_digest=message_digest,
        content_type=content_type, signing_time=signing_time, timestamp=stamp, timestamp_kind=kind,
        nested=nested,
    )


def _content_element(der: bytes) -> tuple[bytes, bytes]:
    """The encoded content element of the SignedData and its contents octets, read from the
    original bytes (RFC 2315 9.3: messageDigest covers the contents octets, not tag and length)."""
    exc = SignatureError
    start, stop, _ = der_.expect(der, 0, len(der), der_.SEQUENCE, "ContentInfo", exc)
    pos = der_.expect(der, start, stop, der_.OID, "ContentInfo.contentType", exc)[2]
    start, stop, _ = der_.expect(der, pos, stop, der_.CONTEXT_0, "ContentInfo.content", exc)
    start, stop, _ = der_.expect(der, start, stop, der_.SEQUENCE, "SignedData", exc)
    pos = der_.expect(der, start, stop, der_.INTEGER, "SignedData.version", exc)[2]
    pos = der_.expect(der, pos, stop, der_.SET, "SignedData.digestAlgorithms", exc)[2]
    start, stop, _ = der_.expect(der, pos, stop, der_.SEQUENCE, "SignedData.contentInfo", exc)
    pos = der_.expect(der, start, stop, der_.OID, "contentInfo.contentType", exc)[2]
    if pos >= stop:
        raise SignatureError("SignedData has no content", field="contentInfo.content")
    start, stop, _ = der_.expect(der, pos, stop, der_.CONTEXT_0, "contentInfo.content", exc)
    _tag, cstart, cend, nxt = der_.header(der, start, stop, "content", exc)
    return der[start:nxt], der[cstart:cend]


def _parse(der: bytes, depth: int) -> SignedData:
    info = cms.ContentInfo.load(der)
    if info["content_type"].dotted != PKCS7_SIGNED_DATA:
        raise SignatureError("not a PKCS#7 SignedData", field="contentType", expected=PKCS7_SIGNED_DATA,
                             found=info["content_type"].dotted)
    sd = info["content"]
    encap = sd["encap_content_info"]
    content_type = encap["content_type"].dotted
    content_tlv, content = _content_element(der)
    indirect = None
    if content_type == SPC_INDIRECT_DATA_OBJID:
        spc = SpcIndirectDataContent.load(content_tlv)
        indirect = IndirectData(spc["data"]["type"].dotted, _digest_name(spc["message_digest"]["digest_algorithm"]),
                                spc["message_digest"]["digest"].native)
    certs = []
    if not isinstance(sd["certificates"], core.Void):
        for choice in sd["certificates"]:
            if choice.name == "certificate":
                certs.append(choice.chosen.dump())
    signers = [_signer(si, depth) for si in sd["signer_infos"]]
    return SignedData(
        content_type=content_type, content=content, content_tlv=content_tlv,
        digest_algorithms=[_digest_name(a) for a in sd["digest_algorithms"]],
        certificates=certs, signers=signers, indirect=indirect,
    )


# --- the common case without asn1crypto ----------------------------------------------------
# A signature with no unsigned attributes (so no timestamp and no nested signature), no CRLs,
# plain certificates and definite lengths is read straight from the DER below. It returns None
# for anything else, and for anything asn1crypto might read differently (other forms, trailing
# or missing elements, unexpected tags), so that _parse (asn1crypto) decides: the two paths give
# equal results wherever the fast one answers (tests/test_signing_pkcs7.py checks it).

class _Other(Exception):
    """Not the common shape: let asn1crypto parse it."""


def _tl(der: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    """(content start, content end) of the definite-length element ``tag`` at ``pos``."""
    if pos + 2 > end or der[pos] != tag:
        raise _Other
    first = der[pos + 1]
    if first < 0x80:
        start, length = pos + 2, first
    elif 0x81 <= first <= 0x84:
        n = first & 0x7F
        start = pos + 2 + n
        if start > end:
            raise _Other
        length = int.from_bytes(der[pos + 2:start], "big")
    else:
        raise _Other
    if start + length > end:
        raise _Other
    return start, start + length


def _any(der: bytes, pos: int, end: int) -> tuple[int, int]:
    """(content start, content end) of the element at ``pos``, any low-number tag."""
    if pos >= end or der[pos] & 0x1F == 0x1F:
        raise _Other
    return _tl(der, pos, end, der[pos])


def _items(der: bytes, start: int, end: int, tag: int) -> list[tuple[int, int, int]]:
    """(element start, content start, content end) of the ``tag`` elements filling [start, end)."""
    out = []
    while start < end:
        s, e = _tl(der, start, end, tag)
        out.append((start, s, e))
        start = e
    return out


def _oid(der: bytes, pos: int, end: int) -> tuple[str, int]:
    s, e = _tl(der, pos, end, der_.OID)
    if s == e:
        raise _Other
    return _dotted(der[s:e]), e


@lru_cache(maxsize=512)
def _dotted(raw: bytes) -> str:
    return der_.oid_to_str(raw)


def _algorithm(der: bytes, start: int, end: int) -> str:
    """AlgorithmIdentifier { OID, parameters NULL or absent } -> the OID (dotted)."""
    oid, pos = _oid(der, start, end)
    if pos != end and der[pos:end] != b"\x05\x00":
        raise _Other
    return oid


def _fast_attributes(der: bytes, start: int, end: int) -> tuple[bytes | None, str | None, datetime | None]:
    """messageDigest, contentType and signingTime of signed attributes (first value of each)."""
    digest = ctype = when = None
    found = set()
    for _, s, e in _items(der, start, end, der_.SEQUENCE):
        oid, pos = _oid(der, s, e)
        vs, ve = _tl(der, pos, e, der_.SET)
        if ve != e or vs == ve:
            raise _Other
        if oid in found:
            raise _Other  # several attributes of one type: asn1crypto reads them all
        found.add(oid)
        tag = der[vs]
        if oid == PKCS9_MESSAGE_DIGEST:
            ds, de = _tl(der, vs, ve, der_.OCTET_STRING)
            digest = der[ds:de]
        elif oid == PKCS9_CONTENT_TYPE:
            ctype, _ = _oid(der, vs, ve)
        elif oid == PKCS9_SIGNING_TIME:
            ts, te = _tl(der, vs, ve, tag)
            if tag != der_.UTC_TIME or te - ts != 13 or der[te - 1] != 0x5A or not der[ts:te - 1].isdigit():
                raise _Other
            try:
                when = der_.parse_time(tag, der[ts:te], "signingTime", SignatureError)
            except SignatureError:
                raise _Other from None
    return digest, ctype, when


def _fast_signer(der: bytes, start: int, end: int) -> SignerInfo:
    vs, ve = _tl(der, start, end, der_.INTEGER)
    version = {b"\x01": "v1", b"\x03": "v3"}.get(der[vs:ve])
    if version is None:
        raise _Other
    issuer_der = serial = ski = None
    if version == "v1":
        ss, se = _tl(der, ve, end, der_.SEQUENCE)
        is_, ie = _tl(der, ss, se, der_.SEQUENCE)
        ns, ne = _tl(der, ie, se, der_.INTEGER)
        if ne != se or ns == ne:
            raise _Other
        issuer_der, serial = der[ss:ie], int.from_bytes(der[ns:ne], "big", signed=True)
    else:
        ss, se = _tl(der, ve, end, 0x80)  # [0] IMPLICIT SubjectKeyIdentifier
        ski = der[ss:se]
    ds, pos = _tl(der, se, end, der_.SEQUENCE)
    digest_algorithm = _algorithm(der, ds, pos)
    signed_der = digest = ctype = when = None
    if pos < end and der[pos] == der_.CONTEXT_0:
        as_, ae = _tl(der, pos, end, der_.CONTEXT_0)
        if as_ < ae:
            signed_der = b"\x31" + der[pos + 1:ae]  # [0] IMPLICIT -> SET OF, as signed (RFC 2315 9.3)
            digest, ctype, when = _fast_attributes(der, as_, ae)
        pos = ae
    gs, ge = _tl(der, pos, end, der_.SEQUENCE)
    signature_algorithm = _algorithm(der, gs, ge)
    ss, se = _tl(der, ge, end, der_.OCTET_STRING)
    if se != end:
        raise _Other  # unsignedAttrs (timestamps, nested signatures) or trailing bytes
    return SignerInfo(
        version=version, issuer_der=issuer_der, serial=serial, subject_key_id=ski,
        digest_algorithm=DIGEST_OIDS.get(digest_algorithm, digest_algorithm),
        signature_algorithm=signature_algorithm, signature=der[ss:se], signed_attrs_der=signed_der,
        message_digest=digest, content_type=ctype, signing_time=when, timestamp=None, timestamp_kind=None,
    )


def _fast_indirect(der: bytes, start: int, end: int) -> IndirectData:
    """SpcIndirectDataContent { data { type OID, value ANY OPTIONAL }, DigestInfo }."""
    ds, de = _tl(der, start, end, der_.SEQUENCE)
    data_type, pos = _oid(der, ds, de)
    if pos < de and _any(der, pos, de)[1] != de:  # value: one element, whatever it is
        raise _Other
    ms, me = _tl(der, de, end, der_.SEQUENCE)
    if me != end:
        raise _Other
    as_, ae = _tl(der, ms, me, der_.SEQUENCE)
    algorithm = _algorithm(der, as_, ae)
    gs, ge = _tl(der, ae, me, der_.OCTET_STRING)
    if ge != me:
        raise _Other
    return IndirectData(data_type, DIGEST_OIDS.get(algorithm, algorithm), der[gs:ge])


def _parse_fast(der: bytes) -> SignedData | None:
    try:
        s, e = _tl(der, 0, len(der), der_.SEQUENCE)  # bytes after ContentInfo are ignored, as by asn1crypto
        oid, pos = _oid(der, s, e)
        if oid != PKCS7_SIGNED_DATA:
            return None
        ws, we = _tl(der, pos, e, der_.CONTEXT_0)
        if we != e:
            return None
        ss, se = _tl(der, ws, we, der_.SEQUENCE)
        if se != we:
            return None
        vs, pos = _tl(der, ss, se, der_.INTEGER)
        if der[vs:pos] not in (b"\x01", b"\x03"):
            return None
        as_, pos = _tl(der, pos, se, der_.SET)
        digest_algorithms = [_algorithm(der, a, b) for _, a, b in _items(der, as_, pos, der_.SEQUENCE)]
        cs, ce = _tl(der, pos, se, der_.SEQUENCE)
        content_type, pos = _oid(der, cs, ce)
        xs, xe = _tl(der, pos, ce, der_.CONTEXT_0)
        if xe != ce or xs == xe:
            return None
        ts, te = _any(der, xs, xe)  # the content element
        if te != xe:
            return None
        content_tlv, content = der[xs:te], der[ts:te]
        pos = ce
        certificates = []
        if pos < se and der[pos] == der_.CONTEXT_0:
            xs, pos = _tl(der, pos, se, der_.CONTEXT_0)
            certificates = [der[a:c] for a, _, c in _items(der, xs, pos, der_.SEQUENCE)]
        is_, ie = _tl(der, pos, se, der_.SET)  # no [1] crls
        if ie != se:
            return None
        signers = [_fast_signer(der, a, b) for _, a, b in _items(der, is_, ie, der_.SEQUENCE)]
        indirect = _fast_indirect(der, ts, te) if content_type == SPC_INDIRECT_DATA_OBJID else None
    except _Other:
        return None
    return SignedData(
        content_type=content_type, content=content, content_tlv=content_tlv,
        digest_algorithms=[DIGEST_OIDS.get(a, a) for a in digest_algorithms],
        certificates=certificates, signers=signers, indirect=indirect,
    )


def parse_signed_data(der: bytes, *, path: str | None = None) -> SignedData:
    """Parse a ContentInfo holding SignedData; broken input raises SignatureError."""
    if not der:
        raise SignatureError("empty signature blob", path=path)
    der = bytes(der)
    fast = _parse_fast(der)
    if fast is not None:
        return fast
    try:
        return _parse(der, 0)
    except SignatureError as e:
        if e.path is None:
            e.path = path
        raise
    except _ASN1_ERRORS as e:
        raise SignatureError(f"malformed PKCS#7 SignedData: {e}", path=path) from e
