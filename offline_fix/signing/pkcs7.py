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


def parse_signed_data(der: bytes, *, path: str | None = None) -> SignedData:
    """Parse a ContentInfo holding SignedData; broken input raises SignatureError."""
    if not der:
        raise SignatureError("empty signature blob", path=path)
    try:
        return _parse(bytes(der), 0)
    except SignatureError as e:
        if e.path is None:
            e.path = path
        raise
    except _ASN1_ERRORS as e:
        raise SignatureError(f"malformed PKCS#7 SignedData: {e}", path=path) from e
