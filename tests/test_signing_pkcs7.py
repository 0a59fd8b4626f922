"""offline_fix/signing/pkcs7.py: the DER fast path reads what asn1crypto reads.

Oracle: pkcs7._parse (asn1crypto) on the same bytes. The fast path answers only for the common
shape (no unsigned attributes, no CRLs, definite lengths); wherever it answers, the result must
equal asn1crypto's, on generated signatures (catalogs and embedded PE signatures, v1 and v3
signer identifiers), real ones (which carry timestamps: asn1crypto decides) and mutations.
"""

from __future__ import annotations

import random

import pytest

from offline_fix.signing import pkcs7
from offline_fix.signing.pe import PeFile
from offline_fix.signing.pkcs7 import SignatureError, parse_signed_data
from images.synth.signing import CatFile, build_catalog, build_pe, make_ca, sign_pe


@pytest.fixture(scope="module")
def blobs():
    ca = make_ca("Pkcs7")
    rng = random.Random(7)
    out = [build_catalog([CatFile("a.sys", rng.randbytes(20), rng.randbytes(32))], ca, v) for v in (1, 2)]
    out.append(build_catalog([CatFile("b.sys", rng.randbytes(20), rng.randbytes(32))], None, 2))
    for alg in ("sha1", "sha256"):
        with PeFile(sign_pe(build_pe(seed=3), ca, alg)) as pe:
            out.append(pe.certificates()[0].data)
    return out


def slow(der: bytes):
    try:
        return pkcs7._parse(der, 0)
    except Exception as e:  # noqa: BLE001 - the oracle's failure, compared by type
        return type(e).__name__


def test_fast_path_answers_and_agrees(blobs):
    for der in blobs:
        got = pkcs7._parse_fast(der)
        assert got is not None and got == slow(der)
    embedded = pkcs7._parse_fast(blobs[-1])
    assert embedded.indirect.digest_algorithm == "sha256" and embedded.signers[0].version == "v1"
    assert embedded.signers[0].signed_attrs_der[0] == 0x31


@pytest.mark.realdata
def test_real_signatures_with_timestamps_go_to_asn1crypto(realdata):
    for rel in ("velociraptor/ntexe.cat", "signify/oem89.cat"):
        der = realdata(rel).read_bytes()
        assert pkcs7._parse_fast(der) is None  # unsignedAttrs: countersignature / RFC 3161
        assert parse_signed_data(der).signers[0].timestamp is not None


def test_mutations_fast_is_none_or_equal(blobs):
    rng = random.Random(71)
    answered = 0
    for _ in range(2000):
        der = bytearray(rng.choice(blobs))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(der))
            if rng.random() < 0.8:
                der[at] = rng.randrange(256)
            else:
                del der[at:]
        der = bytes(der)
        got = pkcs7._parse_fast(der)
        if got is not None:
            answered += 1
            assert got == slow(der)
        else:
            try:
                parse_signed_data(der)
            except SignatureError:
                pass
    assert answered > 100
