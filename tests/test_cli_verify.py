"""`offline-fix drivers verify`: the verdict matrix on built disks (raw, VHDX, folder), with test-CA
drivers and catalogs (images/synth/signing.py builds them independently of offline_fix.signing)
and real files from ../shared/realdata whose digests MANIFEST.md records.

The disk builder here is shared with tests/test_cli_catroot.py.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from cryptography.hazmat.primitives import serialization

from offline_fix.cli import main
from offline_fix.hive.structures import REG_DWORD, REG_EXPAND_SZ
from offline_fix.hive.writer import HiveWriter, new_hive
from images.synth.signing import CatFile, build_catalog, build_pe, make_ca, sign_pe, simple_authenticode

DRIVERS = {  # service -> (file, expected verdict before a restore)
    "embedded": ("embedded.sys", "signed-embedded"),
    "incatroot": ("incatroot.sys", "signed-catalog"),
    "inpackages": ("inpackages.sys", "catalog-missing"),
    "unsigned": ("unsigned.sys", "unsigned"),
    "tampered": ("tampered.sys", "hash-mismatch"),
    "zero": ("zero.sys", "zero-filled"),
    "empty": ("empty.sys", "zero-filled"),
    "text": ("text.sys", "not-a-pe"),
    "truncated": ("truncated.sys", "not-a-pe"),
    "gone": ("gone.sys", "file-missing"),
}
DISABLED = {"offdriver": "off.sys"}  # Start=4: not verified by default


def system_hive(services: dict[str, str], disabled: dict[str, str] = DISABLED) -> bytes:
    """A SYSTEM hive with one kernel driver service (Start=3) per entry, ImagePath in System32\\drivers."""
    hive = new_hive("SYSTEM")
    w = HiveWriter(hive)
    w.create_key("Select")
    for name, value in (("Current", 1), ("Default", 1), ("LastKnownGood", 1), ("Failed", 0)):
        w.set_value("Select", name, REG_DWORD, value)
    w.create_key("ControlSet001\\Services")
    for svc, start, file in [(s, 3, f) for s, f in services.items()] + [(s, 4, f) for s, f in disabled.items()]:
        key = f"ControlSet001\\Services\\{svc}"
        w.create_key(key)
        w.set_value(key, "Type", REG_DWORD, 1)
        w.set_value(key, "Start", REG_DWORD, start)
        w.set_value(key, "ImagePath", REG_EXPAND_SZ, f"System32\\drivers\\{file}")
    w.commit()
    return bytes(hive.buf)


def catfile(name: str, image: bytes) -> CatFile:
    """Digests by the fixtures' own Authenticode helper (not the code under test)."""
    return CatFile(name, simple_authenticode(image, "sha1"), simple_authenticode(image, "sha256"))


class Corpus:
    """Test-CA drivers and catalogs, and the expected verdicts."""

    def __init__(self) -> None:
        self.ca = make_ca("CatRoot")
        pe = {n: build_pe(seed=i + 1) for i, n in enumerate(("embedded", "incatroot", "inpackages", "unsigned", "tampered"))}
        pe["embedded"] = sign_pe(pe["embedded"], self.ca)
        tampered = bytearray(sign_pe(pe["tampered"], self.ca))
        tampered[0x500] ^= 1  # inside .text, which is hashed
        pe["tampered"] = bytes(tampered)
        self.files = {
            "embedded.sys": pe["embedded"], "incatroot.sys": pe["incatroot"], "inpackages.sys": pe["inpackages"],
            "unsigned.sys": pe["unsigned"], "tampered.sys": pe["tampered"], "zero.sys": bytes(8192),
            "empty.sys": b"", "text.sys": b"this is not a driver\r\n" * 40, "truncated.sys": pe["unsigned"][:700],
            "off.sys": build_pe(seed=99),
        }
        self.cat_a = build_catalog([catfile("incatroot.sys", pe["incatroot"])], self.ca, 2)
        self.cat_b = build_catalog([catfile("inpackages.sys", pe["inpackages"])], self.ca, 1)
        self.root_der = self.ca.root.public_bytes(serialization.Encoding.DER)

    def spec(self, layout: str = "mbr", *, catalogs=None, packages=None, drivers=None, **kw):
        from images import specs

        return specs.windows_disk(
            layout, system_hive({s: f for s, (f, _) in DRIVERS.items()}),
            drivers=drivers if drivers is not None else self.files,
            catalogs=catalogs if catalogs is not None else {"Package_A.cat": self.cat_a},
            packages=packages if packages is not None else {"Package_A.cat": self.cat_a, "Package_B.cat": self.cat_b},
            **kw)


@pytest.fixture(scope="session")
def corpus() -> Corpus:
    return Corpus()


@pytest.fixture
def root_file(corpus, tmp_path):
    path = tmp_path / "test-root.der"
    path.write_bytes(corpus.root_der)
    return str(path)


def run_json(capsys, *args) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(list(args) + ["--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out)


def verdicts(doc: dict) -> dict[str, str]:
    return {d["name"]: d["verdict"] for d in doc["drivers"]}


# -- the matrix ----------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["raw", "vhdx", "folder"])
def test_verdict_matrix_of_the_driver_services(corpus, image_cache, root_file, state_dir, capsys, fmt):
    img = image_cache(corpus.spec(), fmt)
    code, doc = run_json(capsys, "drivers", "verify", str(img.path), "--trust-root", root_file)
    assert code == 1 and doc["ok"] is False
    assert verdicts(doc) == {s: v for s, (_, v) in DRIVERS.items()}  # offdriver (Start=4) left out
    rows = {d["name"]: d for d in doc["drivers"]}
    incat = rows["incatroot"]
    assert incat["catalog"] == "Package_A.cat" and incat["catalog_source"] == "catroot"
    assert incat["catalog_signature"]["status"] == "verified"
    assert rows["inpackages"]["catalog"] == "Package_B.cat" and rows["inpackages"]["catalog_source"] == "packages"
    assert "CatRoot Code Signer" in rows["embedded"]["signer"]
    # the Authenticode hashes are the fixtures' own computation, not ours
    for name in ("embedded", "incatroot", "unsigned"):
        data = corpus.files[DRIVERS[name][0]]
        assert rows[name]["sha256"] == simple_authenticode(data, "sha256").hex()
    assert rows["gone"]["path"].endswith("gone.sys") and rows["gone"]["reason"]
    assert doc["counts"]["catalog-missing"] == 1 and "catroot restore" in doc["verdict"]
    assert doc["catalogs"]["catroot"]["catalogs"] == 1 and doc["catalogs"]["packages"]["catalogs"] == 2


def test_text_output_and_names(corpus, image_cache, root_file, state_dir, capsys):
    img = image_cache(corpus.spec(), "raw")
    assert main(["drivers", "verify", str(img.path), "--trust-root", root_file, "embedded", "INCATROOT"]) == 0
    text = capsys.readouterr().out
    assert "signed-embedded" in text and "Package_A.cat" in text
    assert text.strip().splitlines()[-1].startswith("all 2 drivers are signed")
    # a file name in System32\drivers works too, and the disabled service when named
    code, doc = run_json(capsys, "drivers", "verify", str(img.path), "--trust-root", root_file, "off.sys", "offdriver")
    assert code == 1 and set(verdicts(doc).values()) == {"unsigned"}
    assert main(["drivers", "verify", str(img.path), "nosuchdriver"]) == 3


def test_all_files_lists_every_file_of_system32_drivers(corpus, image_cache, root_file, state_dir, capsys):
    img = image_cache(corpus.spec(), "raw")
    code, doc = run_json(capsys, "drivers", "verify", str(img.path), "--all-files", "--trust-root", root_file)
    assert code == 1
    got = verdicts(doc)
    assert set(got) == set(corpus.files)  # gone.sys is no file; off.sys is one
    assert got["off.sys"] == "unsigned" and got["incatroot.sys"] == "signed-catalog"


def test_without_the_test_root_nothing_test_signed_verifies(corpus, image_cache, state_dir, capsys):
    img = image_cache(corpus.spec(), "raw")
    code, doc = run_json(capsys, "drivers", "verify", str(img.path), "embedded", "incatroot")
    assert code == 1 and set(verdicts(doc).values()) == {"unsigned"}
    assert all("not trusted" in d["reason"] or "does not verify" in d["reason"] for d in doc["drivers"])


def test_catalog_index_is_cached_in_the_state_folder(corpus, image_cache, root_file, state_dir, capsys):
    img = image_cache(corpus.spec(), "raw")
    _, first = run_json(capsys, "drivers", "verify", str(img.path), "--trust-root", root_file)
    _, second = run_json(capsys, "drivers", "verify", str(img.path), "--trust-root", root_file)
    assert first["catalogs"]["packages"]["parsed"] == 2 and second["catalogs"]["packages"]["parsed"] == 0
    assert second["catalogs"]["packages"]["cached"] == 2 and verdicts(first) == verdicts(second)
    assert list(state_dir.rglob("catalogs-packages.index.bin"))


def test_pinned_time_outside_the_test_ca_fails(corpus, image_cache, root_file, state_dir, capsys):
    img = image_cache(corpus.spec(), "raw")
    code, doc = run_json(capsys, "drivers", "verify", str(img.path), "--trust-root", root_file,
                         "--at", "2045-01-01", "embedded")
    assert code == 1 and verdicts(doc) == {"embedded": "unsigned"} and doc["at"].startswith("2045-01-01")
    assert main(["drivers", "verify", str(img.path), "--at", "yesterday"]) == 2


# -- real files ------------------------------------------------------------------------------------
REAL_DRIVERS = {"pciide": "pciide.sys", "winpmem": "winpmem_x64.sys", "wkscli": "wkscli.dll",
                "amdinf": "amdacpbtscoext.inf"}


@pytest.fixture
def real_disk(realdata, image_cache):
    from images import specs

    files = {"pciide.sys": realdata("signify/pciide.sys"), "winpmem_x64.sys": realdata("velociraptor/winpmem_x64.sys"),
             "wkscli.dll": realdata("velociraptor/wkscli.dll"), "amdacpbtscoext.inf": realdata("signify/amdacpbtscoext.inf")}
    spec = specs.windows_disk("gpt", system_hive(REAL_DRIVERS, {}), drivers=files,
                              catalogs={"ntexe.cat": realdata("velociraptor/ntexe.cat"),
                                        "catfiletest.cat": realdata("signify/catfiletest.cat")},
                              packages={"oem89.cat": realdata("signify/oem89.cat"),
                                        "ntexe.cat": realdata("velociraptor/ntexe.cat")})
    return image_cache(spec, "raw")


@pytest.mark.realdata
def test_real_drivers_against_manifest_digests(real_disk, state_dir, capsys):
    code, doc = run_json(capsys, "drivers", "verify", str(real_disk.path))
    rows = {d["name"]: d for d in doc["drivers"]}
    assert code == 1
    assert rows["pciide"]["verdict"] == "signed-embedded"  # at its timestamp
    assert rows["pciide"]["sha1"] == "9bd444d58b59cca832bb5fc911f81f6c66b40fcc"
    assert rows["pciide"]["sha256"] == "5cd3641543e7849664975a1465e6835c91d311dd4468decc38caa63c1fb6d462"
    assert rows["winpmem"]["sha1"] == "ebc4763c5dc0d9e09ec0282169e3db35a2481b20"
    assert rows["winpmem"]["sha256"] == "133860770c3080a64d581d2e3b21356b3a2f4c218cf426fe97ac4ad4466400e5"
    assert rows["wkscli"]["verdict"] == "unsigned" and rows["wkscli"]["sha1"] == "5add7101fc98f658ecbdbb191799d001a605d5f9"
    assert rows["wkscli"]["sha256"] == "e7b8ab1c21505d850fcb4118f79ce222b195edb6eaae1f3b032a5dd4c5556a42"
    assert rows["amdinf"]["hash_kind"] == "flat"
    assert rows["amdinf"]["sha1"] == "b1e795b69b4c2a901a8bc8e8b36e988c6c05d836"  # oem89.cat's only member


@pytest.mark.realdata
def test_real_catalog_missing_at_pinned_time(real_disk, state_dir, capsys):
    code, doc = run_json(capsys, "drivers", "verify", str(real_disk.path), "amdinf", "--at", "2022-07-01")
    row = doc["drivers"][0]
    assert code == 1 and row["verdict"] == "catalog-missing" and row["catalog"] == "oem89.cat"
    assert "Microsoft Windows Hardware Compatibility Publisher" in row["signer"]
    assert row["catalog_signature"]["root"] and "Microsoft Root Certificate Authority 2010" in row["catalog_signature"]["root"]


# -- restore, then verify again --------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["raw", "folder"])
def test_restore_turns_catalog_missing_into_signed_catalog(corpus, image_cache, root_file, state_dir, capsys, tmp_path, fmt):
    img = image_cache(corpus.spec(), fmt).copy_to(tmp_path / ("disk" if fmt == "folder" else "disk.img"))
    target = str(img.path)
    _, before = run_json(capsys, "drivers", "verify", target, "--trust-root", root_file, "inpackages")
    assert verdicts(before) == {"inpackages": "catalog-missing"}
    code, restored = run_json(capsys, "catroot", "restore", target)
    assert code == 0 and restored["result"]["status"] == "verified" and [p["name"] for p in restored["plan"]] == ["Package_B.cat"]
    code, after = run_json(capsys, "drivers", "verify", target, "--trust-root", root_file, "inpackages")
    row = after["drivers"][0]
    assert code == 0 and row["verdict"] == "signed-catalog" and row["catalog"] == "Package_B.cat"
    assert row["catalog_source"] == "catroot"


def test_a_catalog_that_lists_a_file_but_does_not_verify_is_named(corpus, image_cache, root_file, state_dir, capsys):
    broken = bytearray(corpus.cat_a)
    broken[-10] ^= 0xFF  # inside the signature value: parses, does not verify
    img = image_cache(corpus.spec(catalogs={"Package_A.cat": bytes(broken)}, packages={}), "raw")
    code, doc = run_json(capsys, "drivers", "verify", str(img.path), "--trust-root", root_file, "incatroot")
    row = doc["drivers"][0]
    assert code == 1 and row["verdict"] == "unsigned" and "Package_A.cat" in row["reason"]
    assert row["catalog_signature"]["status"] == "verification-failed"


def test_truncated_image_is_one_line_error(corpus, image_cache, root_file, state_dir, capsys, tmp_path):
    img = image_cache(corpus.spec(), "raw")
    data = img.path.read_bytes()
    cut = tmp_path / "cut.img"
    cut.write_bytes(data[: len(data) // 3])
    code = main(["drivers", "verify", str(cut), "--trust-root", root_file])
    err = capsys.readouterr().err
    assert code in (3, 5) and "Traceback" not in err and err.count("\n") == 1


def test_bad_trust_root_file(tmp_path, state_dir, capsys):
    bad = tmp_path / "root.der"
    bad.write_bytes(b"\x30\x03\x02\x01\x01")
    assert main(["drivers", "verify", str(tmp_path), "--trust-root", str(bad)]) == 5
    assert main(["drivers", "verify", str(tmp_path), "--trust-root", str(tmp_path / "nope.der")]) == 3
    assert "Traceback" not in capsys.readouterr().err


def sha256_file(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
