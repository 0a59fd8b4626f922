"""offline_fix/signing/verify.py (and pkcs7.py): signatures, chains, pinned times.

Oracles: MANIFEST.md says the embedded signatures of pciide.sys, sigcheck.exe (two), winpmem
(two) and the kernel32 sample, and the catalogs ntexe.cat and oem89.cat, verify (signify), and
catfiletest.cat is unsigned. Verification times are pinned inside the certificates' validity.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offline_fix.signing.pe import PeFile, authenticode_digests
from offline_fix.signing.pkcs7 import SignatureError, parse_signed_data
from offline_fix.signing.verify import Status, TrustStore, verify_signature_blob, verify_signed_data
from images.synth.signing import PINNED, CatFile, build_catalog, build_pe, make_ca, sign_pe


def utc(*args):
    return datetime(*args, tzinfo=timezone.utc)


# (file, pinned time inside every chain certificate's validity, signatures incl. nested, signer)
EMBEDDED = [
    ("signify/pciide.sys", utc(2009, 7, 15), 1, "CN=Microsoft Windows,OU=MOPR"),
    ("signify/sigcheck.exe", utc(2017, 12, 1), 2, "CN=Microsoft Corporation"),
    ("velociraptor/winpmem_x64.sys", utc(2020, 10, 10), 2, "CN=Binalyze LLC"),
    ("signify/d62d3ca4f677eb06ba81b1eba82f375c0c345f0e8f8097c92fc5e36e4d72294e.sample",
     utc(2025, 10, 11), 1, "CN=Microsoft Windows,O=Microsoft"),
]


def embedded_blob(path):
    with PeFile(path) as pe:
        (entry,) = pe.certificates()
        return entry.data


@pytest.mark.realdata
@pytest.mark.parametrize("rel,when,count,signer", EMBEDDED)
def test_real_embedded_signatures_verify_at_pinned_time(realdata, rel, when, count, signer):
    path = realdata(rel)
    result = verify_signature_blob(embedded_blob(path), at=when)
    everything = result.all()
    assert len(everything) == count
    assert all(r.status is Status.VERIFIED for r in everything), [r.reason for r in everything]
    assert signer in result.signer_subject and result.time_source == "pinned"
    digests = authenticode_digests(path, ("sha1", "sha256"))
    for r in everything:  # what the signature vouches for is the file's Authenticode hash
        assert r.signed_digest == digests[r.digest_algorithm]
    assert any("Microsoft" in r.root for r in everything)


@pytest.mark.realdata
def test_default_time_is_the_timestamp(realdata):
    result = verify_signature_blob(embedded_blob(realdata("signify/pciide.sys")))
    assert result.verified and result.time_source == "timestamp"
    assert result.verification_time == utc(2009, 7, 14, 1, 45, 55)


@pytest.mark.realdata
def test_pinned_time_outside_validity_fails(realdata):
    result = verify_signature_blob(embedded_blob(realdata("signify/pciide.sys")), at=utc(2015, 1, 1))
    assert result.status is Status.VERIFICATION_FAILED and "not valid at" in result.reason


@pytest.mark.realdata
@pytest.mark.parametrize("rel,when,signer", [
    ("velociraptor/ntexe.cat", utc(2018, 9, 16), "CN=Microsoft Windows,O=Microsoft Corporation"),
    ("signify/oem89.cat", utc(2022, 7, 1), "CN=Microsoft Windows Hardware Compatibility Publisher"),
])
def test_real_catalogs_verify(realdata, rel, when, signer):
    result = verify_signature_blob(realdata(rel).read_bytes(), at=when, expected_content="1.3.6.1.4.1.311.10.1")
    assert result.status is Status.VERIFIED, result.reason
    assert result.signer_subject.startswith(signer) and "Microsoft Root Certificate Authority 2010" in result.root


@pytest.mark.realdata
def test_unsigned_catalog(realdata):
    result = verify_signature_blob(realdata("signify/catfiletest.cat").read_bytes())
    assert result.status is Status.UNSIGNED


@pytest.mark.realdata
def test_tampered_catalog_content_and_signature(realdata):
    data = bytearray(realdata("velociraptor/ntexe.cat").read_bytes())
    when = utc(2018, 9, 16)
    content = bytearray(data)
    content[300] ^= 1  # inside the CTL (a member digest)
    r = verify_signature_blob(bytes(content), at=when)
    assert r.status is Status.VERIFICATION_FAILED and "messageDigest" in r.reason
    sig = parse_signed_data(bytes(data)).signers[0].signature
    at = bytes(data).index(sig)
    data[at + 10] ^= 1
    r = verify_signature_blob(bytes(data), at=when)
    assert r.status is Status.VERIFICATION_FAILED and "signature does not verify" in r.reason


def test_garbage_is_a_parse_error():
    for bad in (b"", b"\x30\x03\x02\x01\x01", b"junk" * 40):
        assert verify_signature_blob(bad).status is Status.PARSE_ERROR
    with pytest.raises(SignatureError):
        parse_signed_data(b"\x30\x82\x01")


@pytest.fixture(scope="module")
def ca():
    return make_ca("Verify")


def test_test_ca_needs_extra_root(ca):
    cat = build_catalog([CatFile("x.sys", b"\1" * 20, b"\2" * 32)], ca)
    default = verify_signature_blob(cat, at=PINNED)
    assert default.status is Status.VERIFICATION_FAILED and "not trusted" in default.reason
    trusted = verify_signature_blob(cat, trust=TrustStore.microsoft([ca.root]), at=PINNED)
    assert trusted.status is Status.VERIFIED
    assert trusted.chain == ["CN=Verify Code Signer,O=offline-fix tests", "CN=Verify Root CA,O=offline-fix tests"]
    other = make_ca("Other")
    assert verify_signature_blob(cat, trust=TrustStore([other.root]), at=PINNED).status is Status.VERIFICATION_FAILED


def test_signed_test_pe_digest(ca):
    image = sign_pe(build_pe(seed=21), ca)
    with PeFile(image) as pe:
        sd = parse_signed_data(pe.certificates()[0].data)
        digests = pe.digests()
    result = verify_signed_data(sd, trust=TrustStore([ca.root]), at=PINNED)
    assert result.verified and result.signed_digest == digests["sha256"]
    expired = verify_signed_data(sd, trust=TrustStore([ca.root]), at=utc(2041, 1, 1))
    assert expired.status is Status.VERIFICATION_FAILED


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_signature_gives_a_result_never_a_traceback(ca, data):
    blob = bytearray(build_catalog([CatFile("m.sys", b"\3" * 20, b"\4" * 32)], ca))
    for _ in range(data.draw(st.integers(1, 6))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    result = verify_signature_blob(bytes(blob), trust=TrustStore([ca.root]), at=PINNED)
    assert result.status in Status
