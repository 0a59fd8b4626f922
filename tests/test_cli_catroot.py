"""`offline-fix catroot check|baseline|restore` on built disks (raw, dynamic VHDX, folder).

Oracles: the files' bytes read back through The Sleuth Kit's command-line tools (fls/icat), the
sha256 of the whole image before a restore and after its undo, MANIFEST.md (real catalogs), and
the test-CA catalogs of images/synth/signing.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import pytest

from offline_fix.cli import main
from images.synth.signing import CatFile, build_catalog
from test_cli_verify import Corpus, root_file, run_json, system_hive  # noqa: F401 (fixture)

CATROOT = r"Windows\System32\CatRoot\{F750E6C3-38EE-11D1-85E5-00C04FC295EE}"


@pytest.fixture(scope="session")
def corpus() -> Corpus:
    return Corpus()


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tsk_read(img, path: str) -> bytes | None:
    """A file's bytes through TSK's fls + icat (None when fls does not list it)."""
    off = str(img.windows.sector_offset)
    folder, _, name = path.rpartition("\\")
    listing = subprocess.run(["fls", "-o", off, "-p", "-r", str(img.path)], capture_output=True, text=True,
                             check=True).stdout
    want = (folder.replace("\\", "/") + "/" + name).lower()
    for line in listing.splitlines():
        meta, _, p = line.partition("\t")
        if p.lower() == want and not meta.startswith("d/d") and "*" not in meta:
            inode = meta.split()[-1].rstrip(":")
            return subprocess.run(["icat", "-o", off, str(img.path), inode], capture_output=True, check=True).stdout
    return None


@pytest.fixture
def real_disk(realdata, image_cache):
    """CatRoot: ntexe.cat and the unsigned catfiletest.cat; Packages: oem89.cat and ntexe.cat."""
    from images import specs

    spec = specs.windows_disk("gpt", system_hive({}, {}),
                              catalogs={"ntexe.cat": realdata("velociraptor/ntexe.cat"),
                                        "catfiletest.cat": realdata("signify/catfiletest.cat")},
                              packages={"oem89.cat": realdata("signify/oem89.cat"), "oem89.mum": b"<assembly/>",
                                        "ntexe.cat": realdata("velociraptor/ntexe.cat")})
    return lambda fmt="raw": image_cache(spec, fmt)


# -- check -----------------------------------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.parametrize("fmt", ["raw", "vhdx", "folder"])
def test_check_reports_missing_and_unsigned(real_disk, state_dir, capsys, fmt):
    img = real_disk(fmt)
    code, doc = run_json(capsys, "catroot", "check", str(img.path))
    assert code == 1 and doc["healthy"] is False
    assert (doc["catroot_count"], doc["packages_count"], doc["missing"]) == (2, 2, ["oem89.cat"])
    assert doc["catroot2_present"] is True and doc["catroot_127d_count"] == 0
    damaged = doc["folders"]["catroot"]["damaged"]
    assert [(d["name"], d["status"]) for d in damaged] == [("catfiletest.cat", "unsigned")]
    assert doc["verdict"].startswith(f"CatRoot is missing 1 of 2 package catalogs; run `offline-fix catroot restore {img.path}`")
    assert "1 catalog in CatRoot is unsigned" in doc["verdict"]


@pytest.mark.realdata
def test_check_text_and_member_counts(real_disk, state_dir, capsys):
    img = real_disk()
    assert main(["catroot", "check", str(img.path)]) == 1
    text = capsys.readouterr().out.strip().splitlines()
    assert text[-1].startswith("CatRoot is missing 1 of 2 package catalogs")
    assert any("missing from CatRoot (1): oem89.cat" in line for line in text)
    assert any(line.strip().startswith("UNSIGNED") and "catfiletest.cat" in line for line in text)
    _, doc = run_json(capsys, "catroot", "check", str(img.path), "--files")
    members = {f["name"]: f["members"] for f in doc["folders"]["catroot"]["files"]}
    assert members == {"catfiletest.cat": 1, "ntexe.cat": 18}  # MANIFEST.md
    assert doc["index"]["catroot"]["cached"] == 2  # the second run reads from the cache
    code, quick = run_json(capsys, "catroot", "check", str(img.path), "--no-contents")
    assert code == 1 and quick["contents_checked"] is False and quick["folders"]["catroot"]["damaged"] == []


def test_check_healthy_is_exit_0(corpus, image_cache, state_dir, capsys):
    img = image_cache(corpus.spec(packages={"Package_A.cat": corpus.cat_a}), "raw")
    assert main(["catroot", "check", str(img.path)]) == 0
    assert "CatRoot holds all 1 package catalogs" in capsys.readouterr().out


# -- restore on raw images and folders -------------------------------------------------------------
@pytest.mark.realdata
def test_restore_dry_run_writes_nothing(real_disk, state_dir, capsys, tmp_path):
    img = real_disk().copy_to(tmp_path / "disk.img")
    before = sha256(img.path)
    assert main(["catroot", "restore", str(img.path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would copy 1 catalogs (10,717 bytes)" in out and "oem89.cat" in out and "dry run: nothing written" in out
    assert sha256(img.path) == before
    assert main(["journal", str(img.path)]) == 0 and "no changes" in capsys.readouterr().out


@pytest.mark.realdata
def test_restore_on_raw_then_undo(real_disk, realdata, state_dir, capsys, tmp_path):
    img = real_disk().copy_to(tmp_path / "disk.img")
    before = sha256(img.path)
    code, doc = run_json(capsys, "catroot", "restore", str(img.path))
    assert code == 0 and doc["result"]["status"] == "verified" and doc["copies"] == 1
    restored = tsk_read(img, rf"{CATROOT}\oem89.cat")
    assert restored == realdata("signify/oem89.cat").read_bytes()
    assert hashlib.sha256(restored).hexdigest() == "834978eefccfa73c1cc80c96af59b9468f88eed53a781797088fc758604786e9"
    assert tsk_read(img, rf"{CATROOT}\ntexe.cat") == realdata("velociraptor/ntexe.cat").read_bytes()  # untouched
    subprocess.run(["fsstat", "-o", str(img.windows.sector_offset), str(img.path)], check=True, capture_output=True)
    code, check = run_json(capsys, "catroot", "check", str(img.path))
    assert check["missing"] == [] and check["catroot_count"] == 3
    code, again = run_json(capsys, "catroot", "restore", str(img.path))
    assert code == 0 and again["copies"] == 0 and again["result"] is None
    main(["undo", str(img.path), "--all"])
    assert sha256(img.path) == before  # byte-identical
    assert tsk_read(img, rf"{CATROOT}\oem89.cat") is None


@pytest.mark.realdata
def test_undo_of_a_restore_on_an_image_exits_0(real_disk, state_dir, capsys, tmp_path):
    img = real_disk().copy_to(tmp_path / "disk.img")
    before = sha256(img.path)
    assert main(["catroot", "restore", str(img.path)]) == 0
    assert main(["undo", str(img.path), "--all"]) == 0
    assert sha256(img.path) == before
    assert main(["journal", str(img.path)]) == 0
    out = capsys.readouterr().out
    assert "undone" in out and "created" in out


def test_restore_on_a_folder_then_undo(corpus, image_cache, state_dir, capsys, tmp_path):
    img = image_cache(corpus.spec(), "folder").copy_to(tmp_path / "vol")
    dest = img.path / CATROOT.replace("\\", "/") / "Package_B.cat"
    assert not dest.exists()
    code, doc = run_json(capsys, "catroot", "restore", str(img.path))
    assert code == 0 and doc["result"]["status"] == "verified"
    assert dest.read_bytes() == corpus.cat_b
    assert not [p for p in dest.parent.iterdir() if "offline-fix" in p.name]  # no temporary left
    assert main(["undo", str(img.path), "--all"]) == 0
    assert not dest.exists() and (dest.parent / "Package_A.cat").read_bytes() == corpus.cat_a


def test_overwrite_only_when_asked_on_a_folder(corpus, image_cache, state_dir, capsys, tmp_path):
    zeroed = bytes(len(corpus.cat_a))
    img = image_cache(corpus.spec(catalogs={"Package_A.cat": zeroed}), "folder").copy_to(tmp_path / "vol")
    cat_a = img.path / CATROOT.replace("\\", "/") / "Package_A.cat"
    code, doc = run_json(capsys, "catroot", "check", str(img.path))
    assert code == 1 and doc["folders"]["catroot"]["damaged"][0]["status"] == "zero-filled"
    assert "--overwrite` replaces them" in doc["verdict"]
    code, doc = run_json(capsys, "catroot", "restore", str(img.path))
    assert [p["name"] for p in doc["plan"]] == ["Package_B.cat"] and cat_a.read_bytes() == zeroed
    code, doc = run_json(capsys, "catroot", "restore", str(img.path), "--overwrite")
    assert code == 0 and [p["name"] for p in doc["plan"]] == ["Package_A.cat"]
    assert doc["plan"][0]["replaces"]["status"] is None and cat_a.read_bytes() == corpus.cat_a
    assert main(["catroot", "check", str(img.path)]) == 0
    assert main(["undo", str(img.path), "--all"]) == 0
    assert cat_a.read_bytes() == zeroed


# -- dynamic VHDX: works where blocks are allocated, refused cleanly where they are not -------------
def test_vhdx_refuses_before_writing_when_blocks_are_not_allocated(corpus, image_cache, state_dir, capsys, tmp_path):
    # a 9 MiB catalog cannot fit in the free space of the allocated 8 MiB VHDX blocks
    big = build_catalog([CatFile(f"f{i}.sys", i.to_bytes(20, "big"), i.to_bytes(32, "big")) for i in range(40000)],
                        corpus.ca, 1)
    assert len(big) > 8 << 20
    img = image_cache(corpus.spec(packages={"Big.cat": big}), "vhdx").copy_to(tmp_path / "disk.vhdx")
    before = sha256(img.path)
    assert main(["catroot", "restore", str(img.path)]) == 7
    err = capsys.readouterr().err
    assert "convert the disk to raw or fixed VHD" in err and "restore on a mounted folder" in err
    assert "Traceback" not in err and sha256(img.path) == before
    assert main(["journal", str(img.path)]) == 0 and "no changes" in capsys.readouterr().out


def test_vhdx_restore_in_allocated_blocks_works(corpus, image_cache, root_file, state_dir, capsys, tmp_path):
    img = image_cache(corpus.spec(), "vhdx").copy_to(tmp_path / "disk.vhdx")
    before = sha256(img.path)
    code, doc = run_json(capsys, "catroot", "restore", str(img.path))
    assert code == 0 and doc["result"]["status"] == "verified" and doc["plan"][0]["name"] == "Package_B.cat"
    subprocess.run(["qemu-img", "check", str(img.path)], check=True, capture_output=True)
    code, after = run_json(capsys, "drivers", "verify", str(img.path), "--trust-root", root_file, "inpackages")
    assert code == 0 and after["drivers"][0]["verdict"] == "signed-catalog"
    main(["undo", str(img.path), "--all"])
    assert sha256(img.path) == before


def test_vhdx_overwrite_in_allocated_blocks_works(corpus, image_cache, state_dir, capsys, tmp_path):
    garbage = os.urandom(len(corpus.cat_a))  # random bytes: its blocks are allocated in the VHDX
    img = image_cache(corpus.spec(catalogs={"Package_A.cat": garbage}, packages={"Package_A.cat": corpus.cat_a}),
                      "vhdx").copy_to(tmp_path / "disk.vhdx")
    before = sha256(img.path)
    code, doc = run_json(capsys, "catroot", "restore", str(img.path), "--overwrite")
    assert code == 0 and doc["result"]["status"] == "verified"
    subprocess.run(["qemu-img", "check", str(img.path)], check=True, capture_output=True)
    assert main(["catroot", "check", str(img.path)]) == 0
    assert main(["undo", str(img.path), "--all"]) == 0  # a replaced file exists before and after
    assert sha256(img.path) == before


def test_image_overwrite_of_another_size_is_refused(corpus, image_cache, state_dir, capsys, tmp_path):
    img = image_cache(corpus.spec(catalogs={"Package_A.cat": b"\0" * 100}, packages={"Package_A.cat": corpus.cat_a}),
                      "raw").copy_to(tmp_path / "disk.img")
    before = sha256(img.path)
    assert main(["catroot", "restore", str(img.path), "--overwrite"]) == 7
    assert "same size" in capsys.readouterr().err and sha256(img.path) == before


def test_hibernated_volume_is_refused(corpus, image_cache, state_dir, capsys, tmp_path):
    from images import specs

    img = image_cache(corpus.spec(hiberfil_sys=specs.hiberfil("live")), "raw").copy_to(tmp_path / "disk.img")
    before = sha256(img.path)
    assert main(["catroot", "restore", str(img.path)]) == 7
    assert "hibernat" in capsys.readouterr().err and sha256(img.path) == before


def test_libntfs3g_refuses_a_hibernated_overlay(corpus, image_cache):
    """The overlay mount keeps libntfs-3g's own hibernation refusal (the engine's guard is separate)."""
    from images import specs

    from offline_fix.target import open_target
    from offline_fix.target.ntfs3g import NtfsRefusedMount, NtfsVolume, VolumeOverlay

    img = image_cache(corpus.spec(hiberfil_sys=specs.hiberfil("live", signature=b"hibr")), "raw")
    with open_target(str(img.path)) as tgt:
        vol = next(v for v in tgt.volumes if v.offset == img.windows.offset)
        overlay = VolumeOverlay(lambda off, n: vol._disk.read(vol.offset + off, n), vol.size)
        with pytest.raises(NtfsRefusedMount):
            NtfsVolume(overlay=overlay)
        assert overlay.blocks == {} or overlay.changes() == []


# -- baseline --------------------------------------------------------------------------------------
def test_baseline_then_check_against_it(corpus, image_cache, state_dir, capsys, tmp_path):
    other = build_catalog([CatFile("x.sys", bytes(20), bytes(32))], corpus.ca, 2)
    healthy = image_cache(corpus.spec(catalogs={"Package_A.cat": corpus.cat_a, "Package_B.cat": corpus.cat_b}), "raw")
    broken = image_cache(corpus.spec(catalogs={"Package_A.cat": other, "extra.cat": other}), "folder")
    out = tmp_path / "baseline.json"
    assert main(["catroot", "baseline", str(healthy.path), "-o", str(out)]) == 0
    doc = json.loads(out.read_text())
    files = {f["name"]: f for f in doc["folders"]["catroot"]["files"]}
    assert files["Package_B.cat"] == {"name": "Package_B.cat", "size": len(corpus.cat_b),
                                      "sha256": hashlib.sha256(corpus.cat_b).hexdigest()}
    assert main(["catroot", "baseline", str(healthy.path), "-o", str(out)]) == 7  # exists: --force
    code, check = run_json(capsys, "catroot", "check", str(broken.path), "--baseline", str(out))
    assert code == 1
    assert check["baseline"]["missing"] == ["catroot\\Package_B.cat"]
    assert check["baseline"]["extra"] == ["catroot\\extra.cat"]
    assert [c["name"] for c in check["baseline"]["changed"]] == ["catroot\\Package_A.cat"]
    code, same = run_json(capsys, "catroot", "check", str(healthy.path), "--baseline", str(out))
    assert code == 0 and same["baseline"] == {"build": None, "missing": [], "extra": [], "changed": []}


def test_bad_inputs_are_one_line_errors(corpus, image_cache, state_dir, capsys, tmp_path):
    img = image_cache(corpus.spec(), "raw")
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"\x00\xff not json")
    assert main(["catroot", "check", str(img.path), "--baseline", str(garbage)]) == 5
    assert main(["catroot", "check", str(img.path), "--baseline", str(tmp_path / "none.json")]) == 3
    cut = tmp_path / "cut.img"
    with open(img.path, "rb") as src:
        cut.write_bytes(src.read(os.path.getsize(img.path) // 3))
    for args in (["catroot", "check", str(cut)], ["catroot", "restore", str(cut)]):
        assert main(args) in (3, 5)
    nowin = tmp_path / "empty"
    nowin.mkdir()
    assert main(["catroot", "check", str(nowin)]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err and all(line.startswith("offline-fix: error:") for line in err.splitlines())


# -- the libntfs-3g overlay (offline_fix/target/ntfs3g.py) -----------------------------------------
def test_overlay_changes_applied_to_a_copy_give_the_files(corpus, image_cache, tmp_path):
    """What libntfs-3g wrote on the overlay, applied to a copy, is read back by TSK; the original
    image is never touched."""
    from offline_fix.target import open_target
    from offline_fix.target.ntfs3g import NtfsVolume, VolumeOverlay

    img = image_cache(corpus.spec(), "raw")
    before = sha256(img.path)
    copy = img.copy_to(tmp_path / "copy.img")
    with open_target(str(img.path)) as tgt:
        vol = next(v for v in tgt.volumes if v.offset == img.windows.offset)
        overlay = VolumeOverlay(lambda off, n: vol._disk.read(vol.offset + off, n), vol.size)
        with NtfsVolume(overlay=overlay) as ntfs:
            ntfs.write_file(rf"{CATROOT}\new.cat", corpus.cat_b)
            ntfs.mkdir(r"Windows\Temp\made")
        changes = overlay.changes()
    assert sha256(img.path) == before and changes
    with open(copy.path, "r+b") as fh:
        for off, old, new in changes:
            assert len(old) == len(new) and old != new
            fh.seek(vol.offset + off)
            assert fh.read(len(old)) == old
            fh.seek(vol.offset + off)
            fh.write(new)
    assert tsk_read(copy, rf"{CATROOT}\new.cat") == corpus.cat_b
    assert tsk_read(copy, rf"{CATROOT}\Package_A.cat") == corpus.cat_a


def test_overlay_read_error_is_the_error_raised():
    from offline_fix.errors import CorruptInput
    from offline_fix.target.ntfs3g import NtfsVolume, VolumeOverlay

    def broken(off, n):
        raise CorruptInput("disk image truncated", offset=off)

    overlay = VolumeOverlay(broken, 64 << 20, name="broken")
    with pytest.raises(CorruptInput, match="truncated"):
        NtfsVolume(overlay=overlay)
    with pytest.raises(CorruptInput):
        overlay.changes()
