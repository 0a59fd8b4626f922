"""Find, on the helper, the device of the disk a rescue attached (``offline-fix locate --state F``).

All OS-specific lookup lives here. Linux reads the file system under ``root`` (``/`` normally;
tests pass a folder holding a fake /dev and /sys); Windows reads what ``Get-Disk`` prints as JSON
(``get_disk`` is injected by tests, so the Windows logic runs on Linux too).

- AWS, Nitro (NVMe): /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol<id without dash>, made by
  the udev rules of amazon-ec2-utils; without them, the controller whose /sys/class/nvme/*/serial is
  that volume id (EBS puts the volume id in the NVMe serial number).
- AWS, Xen: the device name given at attach time, /dev/sdf, shows up as /dev/xvdf.
- Azure: /dev/disk/azure/scsi1/lun<N> (waagent udev rules) or /dev/disk/azure/data/by-lun/<N>
  (azure-vm-utils).
- Windows helpers: Get-Disk's SerialNumber starts with the volume id without dash (AWS), or its
  Location ends in "LUN <N>" on a data-disk adapter, checked against the disk size (Azure).
- Hyper-V: nothing to find; the VHDX file is the disk.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

from offline_fix.errors import CorruptInput, NotFound, Refused

GET_DISK = ("Get-Disk | Select-Object Number,SerialNumber,Location,Size,IsBoot,IsSystem,"
            "FriendlyName,OperationalStatus | ConvertTo-Json -Depth 2")
MAX_LISTING = 1024 * 1024


class DiskListingError(CorruptInput):
    """What Get-Disk printed is not the JSON list we asked for."""


def locate(doc: dict, *, system: str | None = None, root: str | Path = "/",
           get_disk: Callable[[], str] | None = None) -> dict:
    """Return {"device", "how", ...} for the disk the rescue in ``doc`` (a state document) attached."""
    provider = doc.get("provider")
    facts = doc.get("facts", {})
    system = system or ("windows" if sys.platform == "win32" else "linux")
    if provider == "hyperv":
        path = facts.get("vhdx_path")
        if not path:
            raise NotFound("the state file holds no VHDX path yet (rescue not run?)")
        return {"device": path, "how": "VHDX file on the Hyper-V host (image mode, no mount)"}
    if provider not in ("aws", "azure"):
        raise Refused("unknown provider in state file", field="provider", found=provider)
    if provider == "aws" and not facts.get("volume_id"):
        raise NotFound("the state file holds no volume id yet (rescue not run?)")
    if provider == "azure" and facts.get("helper_lun") is None:
        raise NotFound("the state file holds no LUN yet (rescue not attached the disk?)")
    if system == "windows":
        listing = parse_get_disk((get_disk or run_get_disk)())
        return _windows(provider, facts, listing)
    return _linux(provider, facts, Path(root))


def _in_root(root: Path, dev_path: str) -> Path:
    return root / dev_path.lstrip("/")


def _resolve(root: Path, link: Path) -> str:
    """The device a /dev/disk/... link points to, as a path on the helper (outside any fake root)."""
    real = Path(os.path.realpath(link))
    try:
        return "/" + str(real.relative_to(Path(os.path.realpath(root))))
    except ValueError:
        return str(real)


def _linux(provider: str, facts: dict, root: Path) -> dict:
    tried: list[str] = []
    if provider == "aws":
        vol_hex = facts["volume_id"].replace("-", "")
        link = f"/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{vol_hex}"
        tried.append(link)
        if _in_root(root, link).exists():
            return {"device": _resolve(root, _in_root(root, link)), "how": f"NVMe link {link}"}
        tried.append("/sys/class/nvme/*/serial")
        nvme = _in_root(root, "/sys/class/nvme")
        if nvme.is_dir():
            for ctrl in sorted(nvme.iterdir()):
                serial = ctrl / "serial"
                if serial.is_file() and serial.read_text(errors="replace")[:256].strip() == vol_hex:
                    dev = f"/dev/{ctrl.name}n1"
                    if _in_root(root, dev).exists():
                        return {"device": dev, "how": f"NVMe serial number of {ctrl.name} is {vol_hex}"}
        letter = (facts.get("helper_device") or "").rsplit("/", 1)[-1][-1:]
        if letter:
            for dev in (f"/dev/xvd{letter}", f"/dev/sd{letter}"):
                tried.append(dev)
                if _in_root(root, dev).exists():
                    return {"device": dev, "how": f"Xen device name for {facts['helper_device']} "
                                                  "(no NVMe serial to confirm the volume id)"}
        raise NotFound(f"volume {facts['volume_id']} is not visible on this machine; looked at {', '.join(tried)}")
    lun = int(facts["helper_lun"])
    for link in (f"/dev/disk/azure/scsi1/lun{lun}", f"/dev/disk/azure/data/by-lun/{lun}"):
        tried.append(link)
        if _in_root(root, link).exists():
            return {"device": _resolve(root, _in_root(root, link)), "how": f"Azure udev link {link}"}
    raise NotFound(f"no data disk at LUN {lun} on this machine; looked at {', '.join(tried)} "
                   "(these links come from the Azure Linux agent's or azure-vm-utils' udev rules)")


def run_get_disk() -> str:
    try:
        proc = subprocess.run(["powershell.exe", "-NoProfile", "-NonInteractive", "-Command", GET_DISK],
                              capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise NotFound("powershell.exe not found: Windows lookup needs PowerShell") from None
    if proc.returncode != 0:
        raise Refused(f"Get-Disk failed: {proc.stderr.strip()[:500]}")
    return proc.stdout


def parse_get_disk(text: str) -> list[dict]:
    """ConvertTo-Json prints one object for one disk and a list for several."""
    if len(text) > MAX_LISTING:
        raise DiskListingError("Get-Disk listing too large", expected=f"<= {MAX_LISTING} chars")
    try:
        data = json.loads(text.lstrip("\ufeff"))
    except json.JSONDecodeError as exc:
        raise DiskListingError(f"Get-Disk did not print JSON: {exc}") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(d, dict) and isinstance(d.get("Number"), int) for d in data):
        raise DiskListingError("Get-Disk listing is not a list of disks with a Number", field="Number")
    return data


def _windows(provider: str, facts: dict, disks: list[dict]) -> dict:
    if provider == "aws":
        vol_hex = facts["volume_id"].replace("-", "")
        hits = [d for d in disks if str(d.get("SerialNumber") or "").strip().startswith(vol_hex)]
        how = f"Get-Disk SerialNumber starts with {vol_hex}"
    else:
        lun = int(facts["helper_lun"])
        size = facts.get("disk_size_gb")
        hits = [d for d in disks
                if re.search(rf"\bLUN {lun}\s*$", str(d.get("Location") or ""))
                and not d.get("IsBoot") and not d.get("IsSystem")
                and (size is None or d.get("Size") == int(size) * 2**30)]
        how = f"Get-Disk Location LUN {lun}, not the boot/system disk" + (f", {size} GiB" if size else "")
    if not hits:
        raise NotFound(f"no disk on this Windows machine matches ({how})")
    if len(hits) > 1:
        raise Refused(f"several disks match ({how}); pick one by hand",
                      found=[d["Number"] for d in hits])
    number = hits[0]["Number"]
    return {"device": rf"\\.\PHYSICALDRIVE{number}", "disk_number": number, "how": how,
            "operational_status": hits[0].get("OperationalStatus")}
