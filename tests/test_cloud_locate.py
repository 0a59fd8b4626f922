"""offline-fix locate: the attached disk's device on the helper, Linux (a fake /dev and /sys tree
under tmp_path, laid out as udev and the kernel make them) and Windows (Get-Disk JSON as
PowerShell prints it, injected)."""

from __future__ import annotations

import json
import os

import pytest

from offline_fix.cli import main
from offline_fix.cloud.locate import DiskListingError, locate, parse_get_disk
from offline_fix.cloud.state import State
from offline_fix.errors import NotFound, Refused

AWS = {"provider": "aws", "facts": {"volume_id": "vol-0abc123def4567890", "helper_device": "/dev/sdf"}}
AZURE = {"provider": "azure", "facts": {"helper_lun": 1, "disk_size_gb": 127}}


def link(root, path, target):
    p = root / path.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, p)


def node(root, path, text=""):
    p = root / path.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_aws_nvme_by_id_link(tmp_path):
    node(tmp_path, "/dev/nvme1n1")
    link(tmp_path, "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0abc123def4567890", "../../nvme1n1")
    found = locate(AWS, system="linux", root=tmp_path)
    assert found["device"] == "/dev/nvme1n1"


def test_aws_nvme_serial_without_udev_rules(tmp_path):
    node(tmp_path, "/dev/nvme2n1")
    node(tmp_path, "/sys/class/nvme/nvme0/serial", "vol0ffffffffffffffff\n")
    node(tmp_path, "/sys/class/nvme/nvme2/serial", "vol0abc123def4567890    \n")  # space padded, as NVMe does
    assert locate(AWS, system="linux", root=tmp_path)["device"] == "/dev/nvme2n1"


def test_aws_xen_device_name(tmp_path):
    node(tmp_path, "/dev/xvdf")
    found = locate(AWS, system="linux", root=tmp_path)
    assert found["device"] == "/dev/xvdf" and "Xen" in found["how"]


def test_aws_not_attached_names_what_was_tried(tmp_path):
    with pytest.raises(NotFound, match="nvme-Amazon_Elastic_Block_Store_vol0abc123def4567890"):
        locate(AWS, system="linux", root=tmp_path)


def test_azure_lun_links(tmp_path):
    node(tmp_path, "/dev/sdc")
    link(tmp_path, "/dev/disk/azure/scsi1/lun1", "../../../sdc")
    assert locate(AZURE, system="linux", root=tmp_path)["device"] == "/dev/sdc"
    other = tmp_path / "other"
    node(other, "/dev/sdd")
    link(other, "/dev/disk/azure/data/by-lun/1", "../../../../sdd")
    assert locate(AZURE, system="linux", root=other)["device"] == "/dev/sdd"


# What `Get-Disk | Select-Object ... | ConvertTo-Json` prints on a Windows helper.
WINDOWS_AWS = json.dumps([
    {"Number": 0, "SerialNumber": "vol0123456789abcdef0_00000001.", "Location": "PCI Slot 4 : Adapter 0 : Port 0",
     "Size": 32212254720, "IsBoot": True, "IsSystem": True, "FriendlyName": "NVMe Amazon Elastic B",
     "OperationalStatus": "Online"},
    {"Number": 1, "SerialNumber": "vol0abc123def4567890_00000001.", "Location": "PCI Slot 5 : Adapter 0 : Port 0",
     "Size": 32212254720, "IsBoot": False, "IsSystem": False, "FriendlyName": "NVMe Amazon Elastic B",
     "OperationalStatus": "Offline"},
])
WINDOWS_AZURE = json.dumps([
    {"Number": 0, "SerialNumber": None, "Location": "Integrated : Adapter 0 : Port 0 : Target 0 : LUN 0",
     "Size": 136365211648, "IsBoot": True, "IsSystem": True, "FriendlyName": "Virtual HD"},
    {"Number": 1, "SerialNumber": None, "Location": "Integrated : Adapter 0 : Port 0 : Target 0 : LUN 1",
     "Size": 8589934592, "IsBoot": False, "IsSystem": False, "FriendlyName": "Virtual HD"},  # temp disk
    {"Number": 2, "SerialNumber": None, "Location": "Integrated : Adapter 3 : Port 0 : Target 0 : LUN 0",
     "Size": 34359738368, "IsBoot": False, "IsSystem": False, "FriendlyName": "Msft Virtual Disk"},
    {"Number": 3, "SerialNumber": None, "Location": "Integrated : Adapter 3 : Port 0 : Target 0 : LUN 1",
     "Size": 127 * 2**30, "IsBoot": False, "IsSystem": False, "FriendlyName": "Msft Virtual Disk"},
])


def test_windows_aws_by_serial_number():
    found = locate(AWS, system="windows", get_disk=lambda: WINDOWS_AWS)
    assert found["device"] == r"\\.\PHYSICALDRIVE1" and found["operational_status"] == "Offline"


def test_windows_azure_by_lun_and_size():
    found = locate(AZURE, system="windows", get_disk=lambda: WINDOWS_AZURE)
    assert found["disk_number"] == 3
    # without the size, LUN 1 is ambiguous (the temp disk sits at LUN 1 on the OS adapter)
    with pytest.raises(Refused, match="several disks"):
        locate({"provider": "azure", "facts": {"helper_lun": 1}}, system="windows", get_disk=lambda: WINDOWS_AZURE)


def test_windows_single_disk_and_bad_listing():
    one = json.dumps({"Number": 4, "SerialNumber": "vol0abc123def4567890", "Location": "x"})
    assert locate(AWS, system="windows", get_disk=lambda: one)["disk_number"] == 4
    for bad in ("not json", "[1, 2]", '[{"Number": "x"}]'):
        with pytest.raises(DiskListingError):
            parse_get_disk(bad)


def test_cli_locate(tmp_path, capsys):
    state = State.new("aws", {"instance": "i-1"}, tmp_path / "s.json")
    state.set_facts(AWS["facts"])
    assert main(["locate", "--state", str(tmp_path / "s.json")]) == 3  # nothing attached on this machine
    err = capsys.readouterr().err
    assert "vol-0abc123def4567890" in err and "Traceback" not in err
