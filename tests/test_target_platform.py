"""The OS-specific pieces (offline_fix/target/platform.py), Windows logic included, tested here."""

from __future__ import annotations

import pytest

from offline_fix.target import platform as P

MOUNTINFO = (
    "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
    "40 22 7:0 / /mnt/with\\040space rw,relatime shared:20 - ntfs3 /dev/loop0 rw\n"
    "41 22 0:44 / /proc rw - proc proc rw\n"
    "garbage line without separator\n"
)


def test_parse_mountinfo_unescapes_and_skips_garbage():
    mounts = P.parse_mountinfo(MOUNTINFO)
    assert [m["mount_point"] for m in mounts] == ["/", "/mnt/with space", "/proc"]
    assert mounts[1] == {"devno": "7:0", "root": "/", "mount_point": "/mnt/with space", "fstype": "ntfs3", "source": "/dev/loop0"}


def test_mounted_source_is_reported():
    reasons = P.in_use_reasons("/dev/loop0", P.parse_mountinfo(MOUNTINFO))
    assert any("mounted at /mnt/with space" in r for r in reasons)


@pytest.mark.parametrize("spec,device", [(r"\\.\PhysicalDrive2", True), (r"\\?\PhysicalDrive10", True),
                                         (r"\\.\F:", True), (r"F:\\", False), ("/dev/sdc", False)])
def test_windows_device_paths(spec, device):
    assert P.is_windows_device_path(spec) is device


@pytest.mark.parametrize("spec,root", [("F:", "F:\\"), ("f:\\", "F:\\"), ("F:\\Windows", None), ("/mnt/f", None)])
def test_windows_drive_letters(spec, root):
    assert P.windows_drive_root(spec) == root


def test_windows_online_disk_is_refused():
    reasons = P.windows_in_use_reasons(r"\\.\PhysicalDrive2", {"Number": 2, "IsOffline": False, "IsSystem": False}, None)
    assert reasons == ["disk 2 is online on this helper: take it offline first (Set-Disk -Number 2 -IsOffline $true)"]


def test_windows_offline_data_disk_is_fine():
    assert P.windows_in_use_reasons(r"\\.\PhysicalDrive2", {"Number": 2, "IsOffline": True, "IsSystem": False, "IsBoot": False}, None) == []


def test_windows_system_disk_is_refused_even_offline():
    reasons = P.windows_in_use_reasons(r"\\.\PhysicalDrive0", {"Number": 0, "IsOffline": True, "IsBoot": True}, None)
    assert reasons and "own running system" in reasons[0]


def test_windows_attached_image_is_refused():
    assert "attached" in P.windows_in_use_reasons(r"D:\vms\web01.vhdx", None, {"Attached": True})[0]
    assert P.windows_in_use_reasons(r"D:\vms\web01.vhdx", None, {"Attached": False}) == []


def test_exclusive_lock(tmp_path):
    path = tmp_path / "lock"
    with open(path, "a+b") as first, open(path, "a+b") as second:
        P.lock_exclusive(first)
        with pytest.raises(P.LockBusy):
            P.lock_exclusive(second)
