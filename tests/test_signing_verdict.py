"""offline_fix/signing/verdict.py: the per-driver verdict matrix, on real and built files."""

from __future__ import annotations

import shutil
from datetime import datetime, timezone

import pytest

from offline_fix.signing.index import build_index, catalog_sources
from offline_fix.signing.pe import authenticode_digests
from offline_fix.signing.verdict import (
    CATALOG_MISSING,
    FILE_MISSING,
    HASH_MISMATCH,
    NOT_A_PE,
    SIGNED_CATALOG,
    SIGNED_EMBEDDED,
    UNSIGNED,
    ZERO_FILLED,
    driver_verdict,
)
from offline_fix.signing.verify import TrustStore
from images.synth.signing import PINNED, CatFile, build_catalog, build_pe, make_ca, sign_pe


@pytest.fixture(scope="module")
def ca():
    return make_ca("Verdict")


@pytest.fixture(scope="module")
def trust(ca):
    return TrustStore.microsoft([ca.root])


def catfile(name, image):
    d = authenticode_digests(image)
    return CatFile(name, d["sha1"], d["sha256"])


@pytest.fixture
def disk(tmp_path, ca):
    """A CatRoot with one catalog, a servicing\\Packages with two (one not in CatRoot)."""
    drivers = tmp_path / "drivers"
    catroot = tmp_path / "CatRoot"
    packages = tmp_path / "Packages"
    for d in (drivers, catroot, packages):
        d.mkdir()
    images = {
        "embedded.sys": sign_pe(build_pe(seed=1), ca),
        "incatroot.sys": build_pe(seed=2),
        "inpackages.sys": build_pe(seed=3),
        "unsigned.sys": build_pe(seed=4),
        "tampered.sys": bytearray(sign_pe(build_pe(seed=5), ca)),
        "zero.sys": bytes(4096),
        "text.sys": b"this is not a driver\n" * 20,
    }
    images["tampered.sys"][0x500] ^= 0x01  # inside .text: hashed
    for name, data in images.items():
        (drivers / name).write_bytes(bytes(data))
    cat_a = build_catalog([catfile("incatroot.sys", images["incatroot.sys"])], ca, 2)
    cat_b = build_catalog([catfile("inpackages.sys", images["inpackages.sys"])], ca, 1)
    (catroot / "Package_A.cat").write_bytes(cat_a)
    (packages / "Package_A.cat").write_bytes(cat_a)
    (packages / "Package_B.cat").write_bytes(cat_b)
    return drivers, catroot, packages


EXPECTED = {
    "embedded.sys": SIGNED_EMBEDDED,
    "incatroot.sys": SIGNED_CATALOG,
    "inpackages.sys": CATALOG_MISSING,
    "unsigned.sys": UNSIGNED,
    "tampered.sys": HASH_MISMATCH,
    "zero.sys": ZERO_FILLED,
    "text.sys": NOT_A_PE,
    "missing.sys": FILE_MISSING,
}


def test_verdict_matrix_and_restore(disk, trust, tmp_path):
    drivers, catroot, packages = disk
    cr = build_index(catalog_sources(catroot), state_dir=tmp_path / "state", cache_name="catroot")
    pk = build_index(catalog_sources(packages), state_dir=tmp_path / "state", cache_name="packages")
    got = {name: driver_verdict(drivers / name, catroot=cr, packages=pk, trust=trust, at=PINNED)
           for name in EXPECTED}
    assert {n: v.verdict for n, v in got.items()} == EXPECTED, {n: v.reason for n, v in got.items()}
    assert got["incatroot.sys"].catalog == "Package_A.cat" and got["incatroot.sys"].catalog_source == "catroot"
    assert got["inpackages.sys"].catalog == "Package_B.cat" and "restore" in got["inpackages.sys"].reason
    assert got["embedded.sys"].signer == "CN=Verdict Code Signer,O=offline-fix tests"
    assert got["unsigned.sys"].sha256 == authenticode_digests(drivers / "unsigned.sys")["sha256"].hex()
    for v in got.values():
        assert v.to_dict()["verdict"] == v.verdict
    # restore: copy the missing package catalog into CatRoot, index again -> signed-catalog
    shutil.copy(packages / "Package_B.cat", catroot / "Package_B.cat")
    cr2 = build_index(catalog_sources(catroot), state_dir=tmp_path / "state", cache_name="catroot")
    assert cr2.stats["parsed"] == 1 and cr2.stats["cached"] == 1
    again = driver_verdict(drivers / "inpackages.sys", catroot=cr2, packages=pk, trust=trust, at=PINNED)
    assert again.verdict == SIGNED_CATALOG and again.catalog == "Package_B.cat"


def test_untrusted_signer_is_unsigned_with_reason(disk):
    drivers, catroot, _ = disk
    cr = build_index(catalog_sources(catroot))
    v = driver_verdict(drivers / "embedded.sys", catroot=cr, at=PINNED)  # Microsoft roots only
    assert v.verdict == UNSIGNED and "not trusted" in v.reason
    v = driver_verdict(drivers / "incatroot.sys", catroot=cr, at=PINNED)
    assert v.verdict == UNSIGNED and "Package_A.cat" in v.reason and "does not verify" in v.reason


def utc(*args):
    return datetime(*args, tzinfo=timezone.utc)


@pytest.mark.realdata
def test_real_files(realdata, tmp_path):
    for rel in ("velociraptor/ntexe.cat", "signify/oem89.cat", "signify/catfiletest.cat"):
        shutil.copy(realdata(rel), tmp_path)
    idx = build_index(catalog_sources(tmp_path))
    v = driver_verdict(realdata("signify/pciide.sys"), catroot=idx, at=utc(2009, 7, 15))
    assert v.verdict == SIGNED_EMBEDDED and v.sha1 == "9bd444d58b59cca832bb5fc911f81f6c66b40fcc"
    v = driver_verdict(realdata("velociraptor/wkscli.dll"), catroot=idx)
    assert v.verdict == UNSIGNED and v.sha256.startswith("e7b8ab1c")
    v = driver_verdict(realdata("signify/amdacpbtscoext.inf"), catroot=idx, at=utc(2022, 7, 1))
    assert v.verdict == SIGNED_CATALOG and v.catalog == "oem89.cat" and v.hash_kind == "flat"
    v = driver_verdict(realdata("signify/amdacpbtscoext.inf"), catroot=None, packages=idx, at=utc(2022, 7, 1))
    assert v.verdict == CATALOG_MISSING
    data = bytearray(realdata("signify/pciide.sys").read_bytes())
    data[0x600] ^= 1
    v = driver_verdict(bytes(data), catroot=idx, at=utc(2009, 7, 15))
    assert v.verdict == HASH_MISMATCH and "digest mismatch" in v.reason
    v = driver_verdict(bytes(data[:5000]), catroot=idx)
    assert v.verdict == NOT_A_PE and "damaged PE" in v.reason
    assert driver_verdict(None).verdict == FILE_MISSING
    assert driver_verdict(b"").verdict == ZERO_FILLED
