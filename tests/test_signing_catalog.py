"""offline_fix/signing/catalog.py (and der.py): parsing .cat files.

Oracles: MANIFEST.md (ntexe.cat 18 members; oem89.cat 1 member = flat SHA1 of the .inf;
catfiletest.cat unsigned, member 3d7042...), and an independent reading of the same bytes with
asn1crypto structures declared here, plus catalogs built by images.synth.signing.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from asn1crypto import algos, cms, core, x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offline_fix.signing import der
from offline_fix.signing.catalog import CatalogError, parse_catalog, read_catalog
from images.synth.signing import CatFile, build_catalog, make_ca

# --- an independent CTL reader (asn1crypto) ------------------------------------------------------


class _Attr(core.Sequence):
    _fields = [("type", core.ObjectIdentifier), ("values", core.SetOf, {"spec": core.Any})]


class _Subject(core.Sequence):
    _fields = [("identifier", core.OctetString), ("attributes", core.SetOf, {"spec": _Attr, "optional": True})]


class _DigestInfo(core.Sequence):
    _fields = [("algorithm", algos.DigestAlgorithm), ("digest", core.OctetString)]


class _Indirect(core.Sequence):
    _fields = [("data", core.Any), ("digest", _DigestInfo)]


class _AlgorithmIdentifier(core.Sequence):
    _fields = [("algorithm", core.ObjectIdentifier), ("parameters", core.Any, {"optional": True})]


class _CTL(core.Sequence):  # CertificateTrustList (wincrypt.h)
    _fields = [
        ("version", core.Integer, {"optional": True}),
        ("subject_usage", core.SequenceOf, {"spec": core.ObjectIdentifier}),
        ("list_identifier", core.OctetString, {"optional": True}),
        ("sequence_number", core.Integer, {"optional": True}),
        ("this_update", x509.Time),
        ("next_update", x509.Time, {"optional": True}),
        ("subject_algorithm", _AlgorithmIdentifier),
        ("trusted_subjects", core.SequenceOf, {"spec": _Subject, "optional": True}),
        ("extensions", core.Any, {"explicit": 0, "optional": True}),
    ]


class _EncapCTL(core.Sequence):
    _fields = [("content_type", core.ObjectIdentifier), ("content", _CTL, {"explicit": 0})]


def asn1crypto_members(data: bytes) -> list[tuple[bytes, bytes | None]]:
    encap = cms.ContentInfo.load(data)["content"]["encap_content_info"].dump()
    ctl = _EncapCTL.load(encap)["content"]
    out = []
    for subj in ctl["trusted_subjects"] or []:
        digest = None
        for attr in subj["attributes"] or []:
            if attr["type"].dotted == "1.3.6.1.4.1.311.2.1.4":
                digest = _Indirect.load(attr["values"][0].dump())["digest"]["digest"].native
        out.append((subj["identifier"].native, digest))
    return out


# --- real catalogs -------------------------------------------------------------------------------


@pytest.mark.realdata
def test_ntexe_has_18_members(realdata):
    cat = read_catalog(str(realdata("velociraptor/ntexe.cat")))
    assert cat.signed and len(cat.members) == 18
    assert cat.member_list_type == "catalog_list_member_v2"
    assert cat.this_update == datetime(2018, 9, 15, 6, 9, 47, tzinfo=timezone.utc)
    algs = sorted(alg for alg, _ in cat.index_digests())
    assert algs.count("sha1") == 9 and algs.count("sha256") == 9  # 9 files x (SHA1 + SHA256)
    for m in cat.members:
        if m.digest is not None:  # v2: raw hash tags equal the SpcIndirectData digest
            assert m.tag == m.digest and m.data_type == "pe-image"


@pytest.mark.realdata
def test_oem89_single_member_is_the_inf_flat_sha1(realdata):
    cat = read_catalog(str(realdata("signify/oem89.cat")))
    assert cat.signed and cat.member_list_type == "catalog_list_member"
    (member,) = cat.members
    assert member.digest.hex() == "b1e795b69b4c2a901a8bc8e8b36e988c6c05d836"
    assert member.digest_algorithm == "sha1" and member.data_type == "flat"
    assert member.tag_text == "B1E795B69B4C2A901A8BC8E8B36E988C6C05D836"  # v1: hex as UTF-16 text
    assert member.names["File"] == "amdacpbtscoext.inf"
    assert cat.attributes["HWID1"] == "usb\\vid_0489&pid_e0d6"


@pytest.mark.realdata
def test_catfiletest_is_unsigned(realdata):
    cat = read_catalog(str(realdata("signify/catfiletest.cat")))
    assert not cat.signed and cat.signer_count == 0 and cat.digest_algorithms == []
    assert [m.digest.hex() for m in cat.members] == ["3d704299722321c69faf98aefbf4767e56e309fd"]


@pytest.mark.realdata
@pytest.mark.parametrize("rel", ["velociraptor/ntexe.cat", "signify/oem89.cat", "signify/catfiletest.cat"])
def test_walker_agrees_with_asn1crypto(realdata, rel):
    data = realdata(rel).read_bytes()
    ours = [(m.tag, m.digest) for m in parse_catalog(data).members]
    assert ours == asn1crypto_members(data)


@pytest.mark.realdata
@pytest.mark.parametrize("rel", ["velociraptor/ntexe.cat", "signify/oem89.cat"])
def test_every_truncation_is_a_catalog_error(realdata, rel):
    data = realdata(rel).read_bytes()
    for cut in list(range(0, 200)) + list(range(200, len(data), 97)):
        with pytest.raises(CatalogError):
            parse_catalog(data[:cut])


def test_empty_and_garbage():
    for bad in (b"", b"\0" * 100, b"garbage" * 50, b"\x30\x84\xff\xff\xff\xff", b"\x30\x80" + b"\x30\x80" * 100):
        with pytest.raises(CatalogError):
            parse_catalog(bad)


@pytest.fixture(scope="module")
def ca():
    return make_ca("Catalog")


FILES = [CatFile(f"drv{i}.sys", bytes([i]) * 20, bytes([i]) * 32) for i in range(1, 4)]


@pytest.mark.parametrize("version", [1, 2])
def test_synthetic_catalogs(ca, version):
    data = build_catalog(FILES, ca, version)
    cat = parse_catalog(data)
    assert cat.signed and cat.attributes == {"OS": "_v100_X64"}
    assert [(m.tag, m.digest) for m in cat.members] == asn1crypto_members(data)
    found = set(cat.index_digests())
    for f in FILES:
        assert ("sha1", f.sha1) in found
        if version == 2:
            assert ("sha256", f.sha256) in found
    names = [m.names.get("File") for m in cat.members if m.names]
    assert names == [f.name for f in FILES]
    assert not parse_catalog(build_catalog(FILES, None, version)).signed


def test_der_helpers():
    assert der.oid_to_str(der.oid_bytes("1.3.6.1.4.1.311.2.1.4")) == "1.3.6.1.4.1.311.2.1.4"
    assert der.oid_to_str(der.oid_bytes("2.16.840.1.101.3.4.2.1")) == "2.16.840.1.101.3.4.2.1"
    assert der.parse_time(der.UTC_TIME, b"491231235959Z", "t").year == 2049
    assert der.parse_time(der.UTC_TIME, b"500101000000Z", "t").year == 1950
    assert der.parse_time(der.GENERALIZED_TIME, b"20251010162426.34Z", "t").microsecond == 340000
    with pytest.raises(der.DerError):
        der.parse_time(der.UTC_TIME, b"99999", "t")
    # BER indefinite length is followed: SEQUENCE(indef){ INTEGER 5 } 00 00
    assert der.header(b"\x30\x80\x02\x01\x05\x00\x00", 0, 7, "x") == (0x30, 2, 5, 7)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_catalog_never_escapes_typed_errors(ca, data):
    blob = bytearray(build_catalog(FILES[:2], ca, 2))
    for _ in range(data.draw(st.integers(1, 8))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    try:
        parse_catalog(bytes(blob))
    except CatalogError:
        pass
