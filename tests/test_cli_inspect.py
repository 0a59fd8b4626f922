"""`offline-fix inspect` on built disks (real hives inside), on Windows-made disks, and on bad input.

Oracles: MANIFEST.md (Select values, dirty state and sequence numbers of the real hives, the
Windows-made MBR's partition) and the builder's own partition table (checked by sfdisk in
test_images_build.py)."""

from __future__ import annotations

import gzip
import json
import shutil

import pytest

from offline_fix.cli import main

pytestmark = pytest.mark.realdata


def run(capsys, *args):
    code = main(["inspect", *args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured


def run_json(capsys, *args):
    code, captured = run(capsys, *args, "--json")
    return code, json.loads(captured.out), captured.err


@pytest.fixture(scope="module")
def win7(image_cache, realdata):
    from images import specs

    return lambda layout, fmt: image_cache(
        (specs.win7_gpt if layout == "gpt" else specs.win7_mbr)(system=realdata("regipy/SYSTEM.xz")), fmt)


@pytest.fixture(scope="module")
def win10_dirty(image_cache, realdata):
    from images import specs

    spec = specs.win10_mbr(system=realdata("regipy/SYSTEM_B.xz"), system_log1=realdata("regipy/SYSTEM_B.LOG1.xz"),
                           system_log2=realdata("regipy/SYSTEM_B.LOG2.xz"))
    return lambda fmt: image_cache(spec, fmt)


@pytest.mark.parametrize("layout", ["gpt", "mbr"])
@pytest.mark.parametrize("fmt,container", [("raw", "raw"), ("vhd-fixed", "vhd"), ("vhd-dynamic", "vhd"), ("vhdx", "vhdx")])
def test_win7_disk(capsys, win7, layout, fmt, container):
    img = win7(layout, fmt)
    code, doc, _ = run_json(capsys, str(img.path))
    assert code == 0
    assert doc["container"]["format"] == container
    assert doc["container"]["virtual_size"] == img.virtual_size
    assert doc["partition_table"]["scheme"] == layout
    # every partition the builder made, at the same offset and size
    built = {(p.offset, p.size) for p in img.partitions}
    assert {(p["offset"], p["size"]) for p in doc["partitions"]} == built
    for p in doc["partitions"]:
        assert {"index", "offset", "size", "filesystem"} <= p.keys()
    [win] = doc["windows"]
    assert win["partition"] == img.windows_partition
    assert win["system_hive"]["path"] == r"Windows\System32\config\SYSTEM"
    # MANIFEST: Windows 7 SP1, Select Current=1 LKG=2, clean 13983/13983, host WKS-WIN732BITA
    assert win["system_hive"]["dirty"] is False
    assert win["system_hive"]["sequence"] == [13983, 13983]
    assert win["control_sets"] == ["ControlSet001", "ControlSet002"]
    assert win["current_control_set"] == "ControlSet001"
    assert win["select"]["LastKnownGood"] == 2
    assert win["computer_name"] == "WKS-WIN732BITA"
    assert win["build"] == 7601


@pytest.mark.parametrize("fmt", ["raw", "vhdx"])
def test_dirty_win10_with_logs(capsys, win10_dirty, fmt):
    code, doc, _ = run_json(capsys, str(win10_dirty(fmt).path))
    assert code == 0
    [win] = doc["windows"]
    # MANIFEST: Windows 10 1709, dirty seq 1622/1621, host DESKTOP-PM6C56D
    assert win["system_hive"]["dirty"] is True
    assert win["system_hive"]["sequence"] == [1622, 1621]
    assert win["system_hive"]["logs"] == ["SYSTEM.LOG1", "SYSTEM.LOG2"]
    assert win["computer_name"] == "DESKTOP-PM6C56D"
    assert win["build"] == 16299
    assert any("dirty" in p for p in win["problems"])


def test_table_output(capsys, win7):
    code, captured = run(capsys, str(win7("gpt", "vhdx").path))
    assert code == 0
    assert "Windows install 1 on partition 3: Windows 7 build 7601" in captured.out
    assert "boots ControlSet001" in captured.out
    assert "EFI system partition" in captured.out


def test_folder_target(capsys, image_cache, realdata):
    from images import specs

    img = image_cache(specs.win7_gpt(system=realdata("regipy/SYSTEM.xz")), "folder")
    code, doc, _ = run_json(capsys, str(img.path))
    assert code == 0
    assert doc["kind"] == "folder"
    assert doc["windows"][0]["current_control_set"] == "ControlSet001"


def test_windows_made_mbr_disk_lists_its_partition(capsys, realdata, tmp_path):
    raw = tmp_path / "ntfs_index.raw"
    with gzip.open(realdata("dfir_ntfs/ntfs_index.raw.gz")) as fin, open(raw, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    code, doc, err = run_json(capsys, str(raw))
    assert code == 3  # no Windows install on it
    assert "no Windows installation" in err
    assert doc["partition_table"] == {"scheme": "mbr", "sector_size": 512, "disk_signature": "5b8a2f18"}
    [p] = doc["partitions"]
    assert (p["offset"], p["size"], p["filesystem"], p["label"]) == (65536, 59392 * 512, "ntfs", "Test index")


def test_windows_made_bare_volume_in_qcow2(capsys, realdata):
    code, doc, _ = run_json(capsys, str(realdata("plaso/vsstest.qcow2")))
    assert code == 3
    assert doc["container"]["format"] == "qcow2"
    assert doc["partition_table"]["scheme"] == "none"
    [p] = doc["partitions"]
    assert (p["filesystem"], p["label"], p["size"]) == ("ntfs", "vsstest", 1 << 30)


def test_two_installs_and_install_selection(image_cache, realdata):
    from images import specs
    from offline_fix.errors import NotFound
    from offline_fix.target import open_target
    from offline_fix.windows.install import select_install

    spec = specs.windows_disk("gpt", realdata("regipy/SYSTEM.xz"),
                              extra_volumes=(specs.windows_volume(realdata("regipy/SYSTEM_2.xz"), size_mib=96),))
    img = image_cache(spec, "raw")
    with open_target(str(img.path)) as target:
        with pytest.raises(NotFound, match="--install"):
            select_install(target, None)
        second = select_install(target, 2)
        assert second.summary()["computer_name"] == "SENSEI"
        assert select_install(target, 1).summary()["computer_name"] == "WKS-WIN732BITA"
        with pytest.raises(NotFound, match="number 3"):
            select_install(target, 3)


def test_bitlocker_only_disk_is_unsupported(capsys, image_cache):
    from images import specs
    from images.spec import DiskSpec

    img = image_cache(DiskSpec(layout="gpt", volumes=(specs.bitlocker_volume(), specs.data_volume())), "raw")
    code, doc, err = run_json(capsys, str(img.path))
    assert code == 6
    locked = [p for p in doc["partitions"] if p["filesystem"] == "bitlocker"]
    assert locked and locked[0]["locked"] and "manage-bde" in locked[0]["unlock"]
    assert "BitLocker" in err


def test_disk_without_windows(capsys, image_cache):
    from images import specs
    from images.spec import DiskSpec

    img = image_cache(DiskSpec(layout="mbr", volumes=(specs.data_volume(),)), "vhdx")
    code, doc, err = run_json(capsys, str(img.path))
    assert code == 3
    assert doc["windows"] == [] and any(p["label"] == "Data" for p in doc["partitions"])
    assert err.strip().count("\n") == 0  # one line


@pytest.mark.parametrize("content,code", [(b"hello, this is not a disk\n" * 100, 5), (b"", 5)])
def test_not_a_disk_image(capsys, tmp_path, content, code):
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    rc, captured = run(capsys, str(path))
    assert rc == code
    assert captured.err.startswith("offline-fix: error:") and captured.err.count("\n") == 1


def test_missing_path(capsys):
    rc, captured = run(capsys, "/no/such/disk.vhdx")
    assert rc == 3 and "no such file" in captured.err


def test_truncated_vhdx(capsys, win7, tmp_path):
    data = win7("gpt", "vhdx").path.read_bytes()
    cut = tmp_path / "cut.vhdx"
    cut.write_bytes(data[: len(data) // 3])
    rc, captured = run(capsys, str(cut))
    assert rc == 5 and "truncated" in captured.err and captured.err.count("\n") == 1


def test_truncated_raw(capsys, win7, tmp_path):
    data = win7("mbr", "raw").path.read_bytes()
    cut = tmp_path / "cut.raw"
    cut.write_bytes(data[: 200 * 1024 * 1024])  # the Windows partition ends beyond this
    rc, doc, err = run_json(capsys, str(cut))
    assert rc == 5
    assert "beyond the end of the disk" in err and err.count("\n") == 1
    assert doc["windows"] == []


def test_permission_denied(tmp_path):
    """As an unprivileged user (setpriv), an image only root may read gives exit 4 and one line."""
    import os
    import subprocess
    import sys

    path = tmp_path / "locked.raw"
    path.write_bytes(b"\0" * 4096)
    path.chmod(0o600)
    tmp_path.chmod(0o755)
    if os.geteuid() == 0 and shutil.which("setpriv"):
        cmd = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    elif os.geteuid() != 0:
        cmd = []
        path.chmod(0)
    else:
        pytest.skip("needs setpriv (util-linux) to drop root")
    proc = subprocess.run(cmd + [sys.executable, "-m", "offline_fix", "inspect", str(path)], capture_output=True, text=True)
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr.startswith("offline-fix: error: permission denied") and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr
