"""offline_fix/signing/pe.py: headers, certificate table and the Authenticode image hash.

Oracles: the Authenticode SHA1/SHA256 quoted in ../shared/realdata/MANIFEST.md (computed by
signify), the flat SHA1 listed in oem89.cat, the CheckSum stored by the linker/signing tools,
and an independent simple hash of the synthetic PE files (images.synth.signing.simple_authenticode).
"""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offline_fix.errors import NotFound
from offline_fix.signing import pe as pe_mod
from offline_fix.signing.pe import (
    NotAPe,
    PeError,
    PeFile,
    authenticode_digests,
    flat_digests,
    is_zero_filled,
    pe_checksum,
)
from images.synth.signing import build_pe, simple_authenticode

# MANIFEST.md section 3: Authenticode SHA1, SHA256 (signify 0.9.3).
REAL = {
    "signify/pciide.sys": ("9bd444d58b59cca832bb5fc911f81f6c66b40fcc",
                           "5cd3641543e7849664975a1465e6835c91d311dd4468decc38caa63c1fb6d462"),
    "signify/sigcheck.exe": ("dfbdc3905728da39d9f74d857ac1d228a0ac0218",
                             "a74a343be2234235f57f21b794fdbd379f246a388f7b17bf21cd1d26ece699ef"),
    "velociraptor/winpmem_x64.sys": ("ebc4763c5dc0d9e09ec0282169e3db35a2481b20",
                                     "133860770c3080a64d581d2e3b21356b3a2f4c218cf426fe97ac4ad4466400e5"),
    "velociraptor/wkscli.dll": ("5add7101fc98f658ecbdbb191799d001a605d5f9",
                                "e7b8ab1c21505d850fcb4118f79ce222b195edb6eaae1f3b032a5dd4c5556a42"),
    "signify/d62d3ca4f677eb06ba81b1eba82f375c0c345f0e8f8097c92fc5e36e4d72294e.sample": (
        "f10fb2fab38481bacb4e9d143bccefda2f146b8d",
        "a7c52cf8cf527307ee0532ad566e569d6f8da524625eca61f3437cf53037c9c5"),
}


@pytest.mark.realdata
@pytest.mark.parametrize("rel", sorted(REAL))
def test_authenticode_digests_match_manifest(realdata, rel):
    path = realdata(rel)
    sha1, sha256 = REAL[rel]
    for source in (path, str(path), path.read_bytes()):
        d = authenticode_digests(source)
        assert (d["sha1"].hex(), d["sha256"].hex()) == (sha1, sha256)
    with open(path, "rb") as f:
        assert authenticode_digests(f)["sha256"].hex() == sha256


@pytest.mark.realdata
@pytest.mark.parametrize("rel", sorted(REAL))
def test_streamed_hash_equals_whole_read(realdata, rel, monkeypatch):
    """Force the chunked path (tiny chunks, no whole-file read): same digests."""
    monkeypatch.setattr(pe_mod, "WHOLE_READ_LIMIT", 0)
    monkeypatch.setattr(pe_mod, "CHUNK", 4093)
    d = authenticode_digests(realdata(rel))
    assert d["sha1"].hex() == REAL[rel][0]


@pytest.mark.realdata
def test_flat_hash_of_inf_is_oem89_member(realdata):
    # MANIFEST: oem89.cat's only member is the flat SHA1 of amdacpbtscoext.inf.
    d = flat_digests(realdata("signify/amdacpbtscoext.inf"))
    assert d["sha1"].hex() == "b1e795b69b4c2a901a8bc8e8b36e988c6c05d836"


@pytest.mark.realdata
def test_headers_and_certificate_table(realdata):
    with PeFile(realdata("signify/pciide.sys")) as pe:
        img = pe.image
        certs = pe.certificates()
    assert img.pe32_plus and img.machine == 0x8664
    assert img.has_certificate_table and img.cert_table_offset + img.cert_table_size == img.file_size
    assert [(c.revision, c.certificate_type) for c in certs] == [(0x0200, 2)]
    assert {s.name for s in img.sections} >= {".text", ".rsrc"} or len(img.sections) > 2
    with PeFile(realdata("velociraptor/wkscli.dll")) as pe:
        assert pe.certificates() == [] and not pe.image.has_certificate_table


@pytest.mark.realdata
@pytest.mark.parametrize("rel", ["signify/pciide.sys", "signify/sigcheck.exe", "velociraptor/winpmem_x64.sys"])
def test_pe_checksum_matches_stored(realdata, rel):
    path = realdata(rel)
    with PeFile(path) as pe:
        assert pe_checksum(path) == pe.image.checksum


@pytest.mark.parametrize("pe32_plus", [True, False])
@pytest.mark.parametrize("trailing", [b"", b"x", b"1234567", b"12345678"])
def test_synthetic_pe_matches_independent_hash(pe32_plus, trailing):
    image = build_pe(seed=7, pe32_plus=pe32_plus, trailing=trailing)
    d = authenticode_digests(image, ("sha1", "sha256", "sha512"))
    for alg in ("sha1", "sha256", "sha512"):
        assert d[alg] == simple_authenticode(image, alg)


def test_padding_rule_changes_hash_of_unaligned_file():
    """The 8-byte zero padding rule: a file of size 8k+1 hashes as if padded with 7 zeros."""
    image = build_pe(seed=3, trailing=b"\x01")
    padded = image + bytes(7)
    assert authenticode_digests(image) == authenticode_digests(padded)


def test_checksum_and_security_entry_are_excluded():
    image = bytearray(build_pe(seed=5))
    before = authenticode_digests(bytes(image))
    lfanew = int.from_bytes(image[0x3C:0x40], "little")
    image[lfanew + 24 + 0x40] ^= 0xFF               # CheckSum
    assert authenticode_digests(bytes(image)) == before
    image[lfanew + 24 + 0x400] ^= 0x01             # inside .text (hashed)
    assert authenticode_digests(bytes(image)) != before


def test_zero_filled_and_errors(tmp_path):
    assert is_zero_filled(b"") and is_zero_filled(bytes(5000)) and not is_zero_filled(b"\0\0\1")
    with pytest.raises(NotAPe):
        authenticode_digests(b"")
    with pytest.raises(NotAPe):
        authenticode_digests(b"not a pe at all" * 10)
    bad_lfanew = bytearray(build_pe())
    bad_lfanew[0x3C:0x40] = (10**6).to_bytes(4, "little")
    with pytest.raises(NotAPe, match="e_lfanew"):
        authenticode_digests(bytes(bad_lfanew))
    with pytest.raises(NotFound):
        authenticode_digests(tmp_path / "missing.sys")
    with pytest.raises(NotFound):
        authenticode_digests(tmp_path)


@pytest.mark.realdata
def test_truncated_real_pe_is_a_pe_error(realdata):
    data = realdata("signify/pciide.sys").read_bytes()
    for cut in (2, 63, 64, 0x100, 0x200, 0x400, len(data) // 2, len(data) - 8):
        with pytest.raises(PeError):
            with PeFile(data[:cut]) as pe:
                pe.certificates()
                pe.digests()


def test_file_object_is_streamed(monkeypatch):
    image = build_pe(seed=11, text_size=0x3000)
    monkeypatch.setattr(pe_mod, "CHUNK", 1000)
    assert authenticode_digests(io.BytesIO(image)) == authenticode_digests(image)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_pe_never_escapes_typed_errors(data):
    image = bytearray(build_pe(seed=1))
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, 0x300))  # headers and section table
        image[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(image)))
    try:
        with PeFile(bytes(image[:cut])) as pe:
            pe.certificates()
            pe.digests()
    except PeError:
        pass
