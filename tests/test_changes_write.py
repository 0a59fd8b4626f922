"""The journaled write path on real disks: in place on raw, VHD and VHDX (GPT and MBR) and on
folders; read back by code we did not write (qemu-img, The Sleuth Kit's icat, hivex); undone to
the byte; killed at every step; refused when unsafe."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from offline_fix.cli import main

pytestmark = pytest.mark.realdata
KEY = r"HKLM\SYSTEM\CurrentControlSet\Services\pciide"
QEMU_FORMAT = {"raw": "raw", "vhd-fixed": "vpc", "vhd-dynamic": "vpc", "vhdx": "vhdx"}


def sha(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def cli(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured


def extract_with_tsk(image, fmt, part_offset, path, tmp_path) -> bytes:
    """The file's bytes as The Sleuth Kit reads them (after qemu-img converts the container)."""
    raw = image
    if fmt not in ("raw", "folder"):
        raw = tmp_path / "tsk.raw"
        subprocess.run(["qemu-img", "convert", "-f", QEMU_FORMAT[fmt], "-O", "raw", str(image), str(raw)], check=True)
    sector = str(part_offset // 512)
    inode = subprocess.run(["ifind", "-o", sector, "-n", path, str(raw)], check=True, capture_output=True, text=True).stdout.strip()
    return subprocess.run(["icat", "-o", sector, str(raw), inode], check=True, capture_output=True).stdout


def hivex_value(hive_bytes: bytes, key_path: str, name: str, tmp_path) -> tuple[int, bytes]:
    import hivex

    path = tmp_path / "extracted.hive"
    path.write_bytes(hive_bytes)
    h = hivex.Hivex(str(path))
    node = h.root()
    for part in key_path.split("\\"):
        node = h.node_get_child(node, part)
        assert node, f"{part} missing"
    return h.value_value(h.node_get_value(node, name))


@pytest.fixture(scope="module")
def disks(image_cache, realdata):
    from images import specs

    system = realdata("regipy/SYSTEM.xz")
    return {"gpt": lambda fmt: image_cache(specs.win7_gpt(system=system), fmt),
            "mbr": lambda fmt: image_cache(specs.win7_mbr(system=system), fmt)}


@pytest.mark.parametrize("layout,fmt", [("gpt", "raw"), ("mbr", "vhd-fixed"), ("gpt", "vhdx"), ("mbr", "vhdx"),
                                        ("gpt", "vhd-dynamic"), ("mbr", "raw")])
def test_reg_add_read_back_independently_and_undo(capsys, disks, layout, fmt, tmp_path, state_dir):
    built = disks[layout](fmt)
    image = built.copy_to(tmp_path / f"disk.{fmt}").path
    original = sha(image)
    win = next(p for p in built.partitions if p.number == built.windows_partition)

    code, captured = cli(capsys, "reg", "add", str(image), KEY, "--value", "Start", "--type", "REG_DWORD", "--data", "4", "--force", "--json")
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert result["status"] == "verified"
    assert result["details"][-1] | {"old": 3, "new": 4} == result["details"][-1]

    hive = extract_with_tsk(image, fmt, win.offset, "/Windows/System32/config/SYSTEM", tmp_path)
    assert hivex_value(hive, r"ControlSet001\Services\pciide", "Start", tmp_path) == (4, (4).to_bytes(4, "little"))
    assert hivex_value(hive, r"ControlSet002\Services\pciide", "Start", tmp_path) == (4, (3).to_bytes(4, "little"))
    if fmt == "vhdx":
        subprocess.run(["qemu-img", "check", "-f", "vhdx", str(image)], check=True, capture_output=True)

    code, captured = cli(capsys, "undo", str(image), "--all")
    assert code == 0 and "undone" in captured.out
    assert sha(image) == original
    code, captured = cli(capsys, "journal", str(image), "--json")
    [entry] = json.loads(captured.out)["changes"]
    assert entry["status"] == "undone"


def test_only_the_value_bytes_and_base_block_change(capsys, disks, tmp_path, state_dir):
    image = disks["gpt"]("raw").copy_to(tmp_path / "disk.raw").path
    before = image.read_bytes()
    code, captured = cli(capsys, "reg", "add", str(image), KEY, "--value", "Start", "--type", "REG_DWORD", "--data", "4", "--force")
    assert code == 0, captured.err
    after = image.read_bytes()
    changed = [i for i in range(0, len(before), 512) if before[i:i + 512] != after[i:i + 512]]
    # one sector of the base block, one sector holding the value's inline data
    assert len(changed) == 2


def test_folder_target_and_undo(capsys, image_cache, realdata, tmp_path, state_dir):
    from images import specs

    built = image_cache(specs.win7_gpt(system=realdata("regipy/SYSTEM.xz")), "folder")
    folder = tmp_path / "mnt"
    shutil.copytree(built.path, folder, symlinks=True)
    hive_path = folder / "Windows" / "System32" / "config" / "SYSTEM"
    original = sha(hive_path)
    code, captured = cli(capsys, "reg", "add", str(folder), KEY, "--value", "Start", "--type", "REG_DWORD", "--data", "4", "--force")
    assert code == 0, captured.err
    assert hivex_value(hive_path.read_bytes(), r"ControlSet001\Services\pciide", "Start", tmp_path)[1] == b"\x04\0\0\0"
    code, _ = cli(capsys, "undo", str(folder), "--all")
    assert code == 0 and sha(hive_path) == original


def test_dry_run_writes_nothing(capsys, disks, tmp_path, state_dir):
    image = disks["gpt"]("vhdx").copy_to(tmp_path / "disk.vhdx").path
    original = sha(image)
    code, captured = cli(capsys, "reg", "add", str(image), KEY, "--value", "Start", "--type", "REG_DWORD", "--data", "4", "--force", "--dry-run")
    assert code == 0
    assert "REG_DWORD 3 -> REG_DWORD 4" in captured.out and "nothing written" in captured.out
    assert sha(image) == original
    assert not (state_dir).exists() or not any(state_dir.rglob("journal.jsonl"))


def test_existing_value_needs_f(capsys, disks, tmp_path, state_dir):
    image = disks["gpt"]("raw").copy_to(tmp_path / "disk.raw").path
    original = sha(image)
    code, captured = cli(capsys, "reg", "add", str(image), KEY, "/v", "Start", "/t", "REG_DWORD", "/d", "4")
    assert code == 7 and "/f" in captured.err
    assert sha(image) == original


def test_reg_query_and_delete(capsys, disks, tmp_path, state_dir):
    image = disks["mbr"]("vhdx").copy_to(tmp_path / "disk.vhdx").path
    original = sha(image)
    code, captured = cli(capsys, "reg", "query", str(image), KEY)
    assert code == 0
    assert "HKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet001\\Services\\pciide" in captured.out
    assert "    Start    REG_DWORD    0x3" in captured.out
    code, captured = cli(capsys, "reg", "delete", str(image), KEY, "--value", "Group", "--force")
    assert code == 0, captured.err
    code, captured = cli(capsys, "reg", "query", str(image), KEY, "--value", "Group")
    assert code == 3
    cli(capsys, "undo", str(image), "--all")
    assert sha(image) == original


# -- crash consistency ------------------------------------------------------------------------------

@pytest.mark.parametrize("point", ["after-backup", "after-journal", "mid-write", "before-verify"])
@pytest.mark.parametrize("fmt", ["vhdx", "raw"])
def test_killed_then_undo_or_rerun(capsys, disks, tmp_path, state_dir, point, fmt):
    from Registry import Registry

    built = disks["gpt"](fmt)
    image = built.copy_to(tmp_path / f"disk.{fmt}").path
    original = sha(image)
    env = dict(os.environ, OFFLINE_FIX_CRASH_AT=point, XDG_STATE_HOME=str(state_dir))
    proc = subprocess.run([sys.executable, "-m", "offline_fix", "reg", "add", str(image), KEY, "/v", "Start", "/t",
                           "REG_DWORD", "/d", "4", "/f"], env=env, capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr  # SIGKILL: no cleanup ran

    code, captured = cli(capsys, "journal", str(image), "--json")
    changes = json.loads(captured.out)["changes"]
    if point == "after-backup":
        assert changes == []  # the journal entry was never written: nothing was touched
        assert sha(image) == original
        return
    assert changes[0]["status"] in ("planned", "applying", "applied")

    # a following undo settles the interrupted change and leaves the disk as it was
    code, captured = cli(capsys, "undo", str(image), "--all", "--json")
    assert code == 0, captured.err
    assert sha(image) == original
    code, captured = cli(capsys, "journal", str(image), "--json")
    [entry] = json.loads(captured.out)["changes"]
    assert entry["status"] in ("abandoned", "rolled-back", "undone")

    # and a re-run then applies the change cleanly
    code, captured = cli(capsys, "reg", "add", str(image), KEY, "/v", "Start", "/t", "REG_DWORD", "/d", "4", "/f", "--json")
    assert code == 0 and json.loads(captured.out)["status"] == "verified"
    win = next(p for p in built.partitions if p.number == built.windows_partition)
    hive = extract_with_tsk(image, fmt, win.offset, "/Windows/System32/config/SYSTEM", tmp_path)
    reg = Registry.Registry(__import__("io").BytesIO(hive))
    assert reg.open(r"ControlSet001\Services\pciide").value("Start").value() == 4


def test_killed_then_rerun_settles_first(capsys, disks, tmp_path, state_dir):
    image = disks["gpt"]("vhdx").copy_to(tmp_path / "disk.vhdx").path
    env = dict(os.environ, OFFLINE_FIX_CRASH_AT="before-verify", XDG_STATE_HOME=str(state_dir))
    subprocess.run([sys.executable, "-m", "offline_fix", "reg", "add", str(image), KEY, "/v", "Start", "/t",
                    "REG_DWORD", "/d", "4", "/f"], env=env, capture_output=True)
    code, captured = cli(capsys, "reg", "add", str(image), KEY, "/v", "ErrorControl", "/t", "REG_DWORD", "/d", "0", "/f")
    assert code == 0, captured.err
    assert "interrupted" in captured.err and "as intended" in captured.err
    code, captured = cli(capsys, "journal", str(image), "--json")
    assert [c["status"] for c in json.loads(captured.out)["changes"]] == ["verified", "verified"]


# -- refusals -------------------------------------------------------------------------------------

def test_concurrent_writer_refused(capsys, disks, tmp_path, state_dir):
    from offline_fix.changes.engine import WriteSession
    from offline_fix.cli.common import open_install

    image = disks["gpt"]("raw").copy_to(tmp_path / "disk.raw").path
    original = sha(image)
    tgt, inst = open_install(str(image), None)
    with tgt, WriteSession(tgt, inst.volume):
        code, captured = cli(capsys, "reg", "add", str(image), KEY, "/v", "Start", "/t", "REG_DWORD", "/d", "4", "/f")
    assert code == 7 and "another offline-fix" in captured.err
    assert sha(image) == original


def test_vhdx_with_pending_log_refused(capsys, disks, tmp_path, state_dir):
    import struct

    from dissect.util.hash.crc32c import crc32c

    image = disks["gpt"]("vhdx").copy_to(tmp_path / "disk.vhdx").path
    data = bytearray(image.read_bytes())
    for base in (64 * 1024, 128 * 1024):
        data[base + 48:base + 64] = b"\x42" * 16  # LogGuid set: the log must be replayed first
        data[base + 4:base + 8] = bytes(4)
        struct.pack_into("<I", data, base + 4, crc32c(bytes(data[base:base + 4096])))
    image.write_bytes(data)
    original = sha(image)
    code, captured = cli(capsys, "reg", "add", str(image), KEY, "/v", "Start", "/t", "REG_DWORD", "/d", "4", "/f")
    assert code == 7 and "log" in captured.err
    assert sha(image) == original


def test_symlink_escape_refused(capsys, image_cache, realdata, tmp_path, state_dir):
    from images import specs

    built = image_cache(specs.win7_gpt(system=realdata("regipy/SYSTEM.xz")), "folder")
    folder = tmp_path / "mnt"
    shutil.copytree(built.path, folder, symlinks=True)
    outside = tmp_path / "helper-config"
    shutil.copytree(folder / "Windows" / "System32" / "config", outside)
    shutil.rmtree(folder / "Windows" / "System32" / "config")
    os.symlink(outside, folder / "Windows" / "System32" / "config")
    original = sha(outside / "SYSTEM")
    code, captured = cli(capsys, "reg", "add", str(folder), KEY, "/v", "Start", "/t", "REG_DWORD", "/d", "4", "/f")
    assert code == 7 and "outside" in captured.err
    assert sha(outside / "SYSTEM") == original


def test_live_hibernation_refused_unless_told(capsys, image_cache, realdata, tmp_path, state_dir):
    from images import specs

    built = image_cache(specs.win7_gpt(system=realdata("regipy/SYSTEM.xz"), hiberfil_sys=specs.hiberfil("live")), "raw")
    image = built.copy_to(tmp_path / "disk.raw").path
    original = sha(image)
    code, captured = cli(capsys, "reg", "add", str(image), KEY, "/v", "Start", "/t", "REG_DWORD", "/d", "4", "/f")
    assert code == 7 and "hibernation" in captured.err
    assert sha(image) == original
    code, captured = cli(capsys, "reg", "add", str(image), KEY, "/v", "Start", "/t", "REG_DWORD", "/d", "4", "/f", "--ignore-hibernation")
    assert code == 0 and "hibernation" in captured.err  # the warning


def test_stale_hibernation_file_is_fine(capsys, image_cache, realdata, tmp_path, state_dir):
    from images import specs

    built = image_cache(specs.win7_gpt(system=realdata("regipy/SYSTEM.xz"), hiberfil_sys=specs.hiberfil("stale")), "raw")
    image = built.copy_to(tmp_path / "disk.raw").path
    code, captured = cli(capsys, "reg", "add", str(image), KEY, "/v", "Start", "/t", "REG_DWORD", "/d", "4", "/f")
    assert code == 0, captured.err


def _losetup(*args):
    return subprocess.run(["losetup", *args], capture_output=True, text=True)


def test_mounted_loop_device_refused(capsys, tmp_path, state_dir):
    """An image attached as a loop device and mounted: writing to it (or its device) is refused."""
    if os.geteuid() != 0 or shutil.which("losetup") is None or shutil.which("mkfs.ext4") is None:
        pytest.skip("needs root, losetup and mkfs.ext4")
    image = tmp_path / "ext4.img"
    with open(image, "wb") as fh:
        fh.truncate(32 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    attach = _losetup("-f", "--show", str(image))
    if attach.returncode != 0:
        pytest.skip(f"no loop devices here: {attach.stderr.strip()}")
    loop = attach.stdout.strip()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        if subprocess.run(["mount", loop, str(mnt)], capture_output=True).returncode != 0:
            pytest.skip("cannot mount here")
        try:
            from offline_fix.changes.guards import check_device
            from offline_fix.errors import Refused

            for path, is_device in ((loop, True), (str(image), False)):
                with pytest.raises(Refused, match="mounted"):
                    check_device(path, is_device)
        finally:
            subprocess.run(["umount", str(mnt)], check=False)
    finally:
        _losetup("-d", loop)


def test_helper_system_disk_refused():
    from offline_fix.target import platform

    root = next((m for m in platform.read_mountinfo() if m["mount_point"] == "/"), None)
    if root is None or not root["source"].startswith("/dev/"):
        pytest.skip("the root filesystem is not on a block device here")
    assert platform.system_disk_reason(root["source"]) is not None


# -- dirty hives ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dirty_spec(realdata):
    """A real dirty hive with logs that continue it (regipy's transactions NTUSER.DAT: entries
    566..588), placed where SYSTEM lives: the replay is the same whatever the hive's name."""
    from images import specs

    return specs.win10_gpt(system=realdata("regipy/transactions_NTUSER.DAT.xz"),
                           system_log1=realdata("regipy/transactions_ntuser.dat.log1.xz"),
                           system_log2=realdata("regipy/transactions_ntuser.dat.log2.xz"))


def test_dirty_hive_is_replayed_through_the_journal(capsys, image_cache, dirty_spec, tmp_path, state_dir):
    from Registry import Registry

    folder = tmp_path / "mnt"
    shutil.copytree(image_cache(dirty_spec, "folder").path, folder, symlinks=True)
    hive_path = folder / "Windows" / "System32" / "config" / "SYSTEM"
    original = sha(hive_path)
    code, captured = cli(capsys, "reg", "add", str(folder), r"HKLM\SYSTEM\Environment", "/v", "OfflineFix",
                         "/t", "REG_SZ", "/d", "repaired", "/f", "--json")
    assert code == 0, captured.err
    result = json.loads(captured.out)
    recover = result["details"][0]
    assert recover["op"] == "recover" and recover["applied_entries"] == list(range(566, 589))
    reg = Registry.Registry(str(hive_path))
    assert reg.open("Environment").value("OfflineFix").value() == "repaired"
    head = hive_path.read_bytes()[:12]
    assert head[4:8] == head[8:12] == (590).to_bytes(4, "little")  # clean: last entry 588 + 1, then our commit
    code, _ = cli(capsys, "undo", str(folder), "--all")
    assert code == 0 and sha(hive_path) == original  # the dirty original, byte for byte


def test_dirty_hive_replayed_in_place_in_an_image(capsys, image_cache, dirty_spec, tmp_path, state_dir):
    """The replay fits the file (its hive bins grow inside the 1 MiB file): written in place,
    read back by TSK + hivex, and undone to the byte."""
    built = image_cache(dirty_spec, "vhdx")
    image = built.copy_to(tmp_path / "disk.vhdx").path
    original = sha(image)
    code, captured = cli(capsys, "reg", "add", str(image), r"HKLM\SYSTEM\Environment", "/v", "X", "/t", "REG_SZ", "/d", "y", "/f")
    assert code == 0, captured.err
    win = next(p for p in built.partitions if p.number == built.windows_partition)
    hive = extract_with_tsk(image, "vhdx", win.offset, "/Windows/System32/config/SYSTEM", tmp_path)
    assert hivex_value(hive, "Environment", "X", tmp_path) == (1, "y\0".encode("utf-16-le"))
    code, _ = cli(capsys, "undo", str(image), "--all")
    assert code == 0 and sha(image) == original


def test_logs_that_do_not_continue_the_hive_are_refused(capsys, image_cache, realdata, tmp_path, state_dir):
    from images import specs

    spec = specs.win10_mbr(system=realdata("regipy/SYSTEM_B.xz"), system_log1=realdata("regipy/SYSTEM_B.LOG1.xz"),
                           system_log2=realdata("regipy/SYSTEM_B.LOG2.xz"))
    image = image_cache(spec, "raw").copy_to(tmp_path / "disk.raw").path
    original = sha(image)
    code, captured = cli(capsys, "reg", "add", str(image), KEY, "/v", "Start", "/t", "REG_DWORD", "/d", "4", "/f")
    assert code == 5 and "1621" in captured.err  # the expected sequence number is named
    assert sha(image) == original


def test_binary_value_is_journaled(capsys, disks, tmp_path, state_dir):
    image = disks["gpt"]("raw").copy_to(tmp_path / "disk.raw").path
    original = sha(image)
    code, captured = cli(capsys, "reg", "add", str(image), KEY, "/v", "Blob", "/t", "REG_BINARY", "/d", "0102ff", "/f", "--json")
    assert code == 0, captured.err
    assert json.loads(captured.out)["details"][-1]["new"] == {"hex": "0102ff"}
    code, captured = cli(capsys, "journal", str(image), "--json")
    assert json.loads(captured.out)["changes"][0]["details"][-1]["new"] == {"hex": "0102ff"}
    cli(capsys, "undo", str(image), "--all")
    assert sha(image) == original
