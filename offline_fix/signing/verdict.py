"""The per-driver signing verdict that ``offline-fix drivers verify`` reports.

One verdict per file, checked in this order:

``file-missing``     the file does not exist;
``zero-filled``      empty, or every byte is zero (a classic of crashed writes);
``signed-embedded``  an embedded signature (or a nested one) verifies and vouches for the
                     file's current Authenticode hash;
``signed-catalog``   the hash is listed in a catalog of the disk's CatRoot whose signature
                     verifies (``catalog`` names it);
``catalog-missing``  the hash is listed only in a verified ``servicing\\Packages`` catalog:
                     restoring that catalog into CatRoot fixes it;
``hash-mismatch``    an embedded signature exists but vouches for different bytes (tampered or
                     damaged) and no catalog lists the file;
``not-a-pe``         no valid PE structure (and no catalog lists the file's flat hash);
``unsigned``         none of the above; ``reason`` says what was found (no signature, an
                     untrusted or expired chain, a catalog whose signature does not verify ...).

See verify.py for what "verifies" includes and excludes. Non-PE files (an .inf, say) are looked
up in the catalogs by their flat hash, so a catalog-signed .inf is ``signed-catalog``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from offline_fix.errors import NotFound
from offline_fix.signing.pe import NotAPe, PeError, PeFile, Source, flat_digests, is_zero_filled
from offline_fix.signing.pe_layout import WIN_CERT_TYPE_PKCS_SIGNED_DATA

if TYPE_CHECKING:
    from offline_fix.signing.index import CatalogIndex
    from offline_fix.signing.verify import SignatureResult, TrustStore

SIGNED_EMBEDDED = "signed-embedded"
SIGNED_CATALOG = "signed-catalog"
CATALOG_MISSING = "catalog-missing"
UNSIGNED = "unsigned"
HASH_MISMATCH = "hash-mismatch"
FILE_MISSING = "file-missing"
ZERO_FILLED = "zero-filled"
NOT_A_PE = "not-a-pe"
VERDICTS = (SIGNED_EMBEDDED, SIGNED_CATALOG, CATALOG_MISSING, UNSIGNED, HASH_MISMATCH,
            FILE_MISSING, ZERO_FILLED, NOT_A_PE)
BASE_ALGORITHMS = ("sha1", "sha256")


@dataclass
class DriverVerdict:
    name: str
    verdict: str
    reason: str = ""
    size: int | None = None
    hash_kind: str | None = None         # "authenticode" (PE) or "flat" (whole file)
    digests: dict[str, bytes] = field(default_factory=dict)
    embedded: list["SignatureResult"] = field(default_factory=list)
    catalog: str | None = None           # catalog file name that signs the file
    catalog_path: str | None = None
    catalog_source: str | None = None    # "catroot" or "packages"
    catalog_signature: "SignatureResult | None" = None
    signer: str | None = None
    anomalies: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verdict in (SIGNED_EMBEDDED, SIGNED_CATALOG)

    @property
    def sha1(self) -> str | None:
        return self.digests["sha1"].hex() if "sha1" in self.digests else None

    @property
    def sha256(self) -> str | None:
        return self.digests["sha256"].hex() if "sha256" in self.digests else None

    def to_dict(self) -> dict:
        return {
            "name": self.name, "verdict": self.verdict, "reason": self.reason, "size": self.size,
            "hash_kind": self.hash_kind, "sha1": self.sha1, "sha256": self.sha256,
            "signer": self.signer, "catalog": self.catalog, "catalog_path": self.catalog_path,
            "catalog_source": self.catalog_source,
            "catalog_signature": self.catalog_signature.to_dict() if self.catalog_signature else None,
            "embedded": [r.to_dict() for r in self.embedded], "anomalies": list(self.anomalies),
        }


def _embedded(pe: PeFile) -> tuple[list, list[str]]:
    """Parsed SignedData of each PKCS#7 certificate-table entry, and problems met."""
    from offline_fix.signing.pkcs7 import SignatureError, parse_signed_data

    parsed, problems = [], []
    for cert in pe.certificates():
        if cert.certificate_type != WIN_CERT_TYPE_PKCS_SIGNED_DATA:
            problems.append(f"certificate table entry of type {cert.certificate_type:#x} ignored")
            continue
        try:
            parsed.append(parse_signed_data(cert.data, path=pe.name))
        except SignatureError as e:
            problems.append(f"embedded signature unparsable: {e}")
    return parsed, problems


def _algorithms(signed: list) -> tuple[str, ...]:
    from offline_fix.signing.pe import SUPPORTED_ALGORITHMS

    algs = list(BASE_ALGORITHMS)
    stack = list(signed)
    while stack:
        sd = stack.pop()
        if sd.indirect and sd.indirect.digest_algorithm not in algs \
                and sd.indirect.digest_algorithm in SUPPORTED_ALGORITHMS:
            algs.append(sd.indirect.digest_algorithm)
        for signer in sd.signers:
            stack.extend(signer.nested)
    return tuple(algs)


def _mark_digests(result: "SignatureResult", digests: dict[str, bytes]) -> None:
    from offline_fix.signing.verify import Status

    for r in result.all():
        if r.signed_digest is None:
            continue
        computed = digests.get(r.digest_algorithm or "")
        r.digest_match = computed is not None and computed == r.signed_digest
        if not r.digest_match and r.status in (Status.VERIFIED, Status.VERIFICATION_FAILED):
            r.status = Status.VERIFICATION_FAILED
            r.reason = (f"image digest mismatch: signature vouches for {r.signed_digest.hex()}, "
                        f"file hashes to {computed.hex() if computed else 'n/a'} ({r.digest_algorithm})")


def _catalog_hit(index: "CatalogIndex | None", digests: dict[str, bytes], trust, at) -> tuple:
    """(verified hit, its result) or (None, first failing (hit, result) or None)."""
    if index is None:
        return None, None
    failed = None
    for hit in index.find(digests):
        result = index.verify(hit.key, trust=trust, at=at)
        if result.verified:
            return (hit, result), failed
        if failed is None:
            failed = (hit, result)
    return None, failed


def driver_verdict(source: Source | None, *, catroot: "CatalogIndex | None" = None,
                   packages: "CatalogIndex | None" = None, trust: "TrustStore | None" = None,
                   at: datetime | None = None, name: str | None = None) -> DriverVerdict:
    """Judge one driver file (a path, bytes or a binary file object; None = missing).

    ``catroot`` indexes the disk's CatRoot catalogs, ``packages`` its servicing\\Packages ones.
    ``at`` pins the verification time (default: each signature's timestamp, else now).
    """
    from offline_fix.signing.verify import TrustStore, verify_signed_data

    trust = trust or TrustStore.microsoft()
    label = name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<data>")
    v = DriverVerdict(label, UNSIGNED)
    if source is None:
        v.verdict, v.reason = FILE_MISSING, "file not found"
        return v
    try:
        pe = PeFile(source, name=label)
    except NotFound as e:
        v.verdict, v.reason = FILE_MISSING, str(e)
        return v
    except PeError as e:
        return _not_pe(v, source, e, catroot, packages, trust, at)
    with pe:
        v.size = pe.image.file_size
        v.anomalies = list(pe.image.anomalies)
        try:
            signed, problems = _embedded(pe)
            v.anomalies.extend(problems)
            v.digests = pe.digests(_algorithms(signed))
        except PeError as e:
            return _not_pe(v, source, e, catroot, packages, trust, at)
    v.hash_kind = "authenticode"
    for sd in signed:
        result = verify_signed_data(sd, trust=trust, at=at)
        _mark_digests(result, v.digests)
        v.embedded.append(result)
    all_results = [r for top in v.embedded for r in top.all()]
    good = next((r for r in all_results if r.verified and r.digest_match), None)
    if good is not None:
        v.verdict, v.signer = SIGNED_EMBEDDED, good.signer_subject
        v.reason = f"embedded signature by {good.signer_subject} chains to {good.root}"
        return v
    if _judge_catalogs(v, catroot, packages, trust, at):
        return v
    mismatch = next((r for r in all_results if r.digest_match is False), None)
    if mismatch is not None:
        v.verdict, v.signer, v.reason = HASH_MISMATCH, mismatch.signer_subject, mismatch.reason
        return v
    if all_results:
        first = all_results[0]
        v.signer = first.signer_subject
        v.reason = f"embedded signature does not verify: {first.reason}"
    elif problems:
        v.reason = "; ".join(problems)
    if not v.reason:
        v.reason = "no embedded signature and no catalog lists this file"
    return v


def _judge_catalogs(v: DriverVerdict, catroot, packages, trust, at) -> bool:
    """Set a catalog verdict when a verified catalog lists the digests; note failures in reason."""
    hit, failed = _catalog_hit(catroot, v.digests, trust, at)
    source = "catroot"
    verdict = SIGNED_CATALOG
    if hit is None:
        hit2, failed2 = _catalog_hit(packages, v.digests, trust, at)
        failed = failed or failed2
        if hit2 is not None:
            hit, source, verdict = hit2, "packages", CATALOG_MISSING
    if hit is not None:
        found, result = hit
        v.verdict, v.catalog, v.catalog_path, v.catalog_source = verdict, found.name, found.key, source
        v.catalog_signature, v.signer = result, result.signer_subject
        v.reason = (f"listed in {found.name} ({found.algorithm})" if verdict == SIGNED_CATALOG else
                    f"listed only in servicing\\Packages\\{found.name}: restore it into CatRoot")
        return True
    if failed is not None:
        found, result = failed
        v.catalog, v.catalog_path, v.catalog_signature = found.name, found.key, result
        v.reason = f"listed in {found.name} whose signature does not verify: {result.reason}"
    return False


def _not_pe(v: DriverVerdict, source, error: PeError, catroot, packages, trust, at) -> DriverVerdict:
    """Zero-filled, or a non-PE file looked up by its flat hash, or not-a-pe."""
    try:
        if is_zero_filled(source):
            v.verdict = ZERO_FILLED
            v.reason = "empty file" if v.size == 0 or _size(source) == 0 else "every byte is zero"
            return v
        v.digests = flat_digests(source)
    except NotFound as e:
        v.verdict, v.reason = FILE_MISSING, str(e)
        return v
    v.hash_kind = "flat"
    v.size = _size(source)
    if _judge_catalogs(v, catroot, packages, trust, at):
        return v
    v.verdict = NOT_A_PE
    prefix = "" if isinstance(error, NotAPe) else "damaged PE: "
    v.reason = prefix + str(error) + (f"; {v.reason}" if v.reason else "")
    return v


def _size(source) -> int | None:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return len(source)
    if isinstance(source, (str, os.PathLike)):
        try:
            return os.path.getsize(source)
        except OSError:
            return None
    try:
        return source.seek(0, os.SEEK_END)
    except (OSError, AttributeError):
        return None
