"""Hyper-V adapter: the exact PowerShell command lines, and the direct-VHDX path on a built VHDX.

There is no Hyper-V on Linux, so the runner is a small PowerShell stand-in that records each
command line and acts out the few commands the adapter uses (Get-VM, Get-VMHardDiskDrive,
Stop-VM, Start-VM, Copy-Item, Get-FileHash) on a real VHDX file built here with mkntfs + qemu-img.
Oracles: hashlib over the files, and qemu-img check run on the path the adapter hands over.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess

import pytest

from offline_fix.cli import main
from offline_fix.cloud.hyperv import POWERSHELL, PRELUDE, HyperVAdapter, backup_path, pick_os_disk, ps_quote
from offline_fix.cloud.state import State
from offline_fix.errors import NotFound, Refused, Unsupported

Q = r"'((?:[^']|'')*)'"  # a PowerShell single-quoted literal


def unq(text: str) -> str:
    return text.replace("''", "'")


class FakePowerShell:
    def __init__(self, vm_name, vhdx, state="Running", generation=2, drives=None):
        self.vm = {"Name": vm_name, "Id": "6f1c5c1e-0000-4000-8000-000000000001", "Generation": generation,
                   "State": state}
        self.drives = drives if drives is not None else [
            {"ControllerType": "SCSI", "ControllerNumber": 0, "ControllerLocation": 0, "Path": str(vhdx),
             "DiskNumber": None}]
        self.commands: list[str] = []
        self.argvs: list[list[str]] = []

    def __call__(self, argv):
        assert argv[:-1] == POWERSHELL and argv[-1].startswith(PRELUDE)
        self.argvs.append(argv)
        cmd = argv[-1][len(PRELUDE):]
        self.commands.append(cmd)
        out = self.act(cmd)
        return subprocess.CompletedProcess(argv, 0 if out is not None else 1, out or "", "" if out else "unknown")

    def act(self, cmd):
        if m := re.fullmatch(rf"Get-VM -Name {Q} \| .*ConvertTo-Json -Compress", cmd):
            return json.dumps(self.vm) if unq(m[1]) == self.vm["Name"] else ""
        if m := re.fullmatch(rf"Get-VMHardDiskDrive -VMName {Q} \| .*ConvertTo-Json -Compress", cmd):
            return json.dumps(self.drives[0] if len(self.drives) == 1 else self.drives)
        if m := re.fullmatch(rf"Stop-VM -Name {Q} -Force( -TurnOff)?", cmd):
            self.vm["State"] = "Off"
            return "\n"
        if m := re.fullmatch(rf"Start-VM -Name {Q}", cmd):
            self.vm["State"] = "Running"
            return "\n"
        if m := re.fullmatch(rf"Copy-Item -LiteralPath {Q} -Destination {Q} -Force", cmd):
            shutil.copyfile(unq(m[1]), unq(m[2]))
            return "\n"
        if m := re.fullmatch(rf"\(Get-FileHash -Algorithm SHA256 -LiteralPath {Q}\)\.Hash", cmd):
            return sha256(unq(m[1])).upper() + "\n"
        return None


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture(scope="module")
def built_vhdx(tmp_path_factory):
    """A dynamic VHDX holding a real NTFS volume, in a folder whose name needs quoting."""
    for tool in ("mkntfs", "qemu-img"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    folder = tmp_path_factory.mktemp("hv") / "Hyper-V Disks"
    folder.mkdir()
    raw = folder / "disk.raw"
    with open(raw, "wb") as f:
        f.truncate(16 * 1024 * 1024)
    subprocess.run(["mkntfs", "-F", "-f", "-q", "-L", "Windows", str(raw)], check=True, capture_output=True)
    vhdx = folder / "o'brien web01.vhdx"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vhdx", str(raw), str(vhdx)], check=True)
    raw.unlink()
    return vhdx


@pytest.fixture
def vhdx(built_vhdx, tmp_path):
    target = tmp_path / built_vhdx.parent.name
    target.mkdir()
    copy = target / built_vhdx.name
    shutil.copyfile(built_vhdx, copy)
    return copy


def new_state(tmp_path, **params):
    return State.new("hyperv", {"vm": "web01", **params}, tmp_path / "hv.json")


def test_exact_command_lines(vhdx, tmp_path):
    ps = FakePowerShell("web01", vhdx)
    state = new_state(tmp_path)
    result = HyperVAdapter(state, runner=ps).rescue()
    backup = backup_path(str(vhdx), state.run_id)
    p, b = ps_quote(str(vhdx)), ps_quote(backup)
    assert "o''brien web01.vhdx" in p
    assert ps.commands == [
        "Get-VM -Name 'web01' | Select-Object Name,Id,Generation,@{n='State';e={[string]$_.State}} "
        "| ConvertTo-Json -Compress",
        "Get-VMHardDiskDrive -VMName 'web01' | Select-Object @{n='ControllerType';e={[string]$_.ControllerType}},"
        "ControllerNumber,ControllerLocation,Path,DiskNumber | ConvertTo-Json -Compress",
        "Get-VM -Name 'web01' | Select-Object Name,Id,Generation,@{n='State';e={[string]$_.State}} "
        "| ConvertTo-Json -Compress",
        "Stop-VM -Name 'web01' -Force",
        "Get-VM -Name 'web01' | Select-Object Name,Id,Generation,@{n='State';e={[string]$_.State}} "
        "| ConvertTo-Json -Compress",
        f"Copy-Item -LiteralPath {p} -Destination {b} -Force",
        f"(Get-FileHash -Algorithm SHA256 -LiteralPath {p}).Hash",
        f"(Get-FileHash -Algorithm SHA256 -LiteralPath {b}).Hash",
    ]
    assert ps.argvs[3] == ["powershell.exe", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass",
                           "-Command", "$ErrorActionPreference = 'Stop'; Stop-VM -Name 'web01' -Force"]
    assert result["backup_sha256"] == sha256(vhdx) == sha256(backup)
    assert ps.vm["State"] == "Off"


def test_vhdx_path_handed_to_offline_fix_is_the_reported_one(vhdx, tmp_path):
    ps = FakePowerShell("web01", vhdx)
    seen = []

    def record(argv, check):
        seen.append(argv)
        return subprocess.CompletedProcess(argv, 0)

    HyperVAdapter(new_state(tmp_path), runner=ps).rescue(run="offline-fix inspect {disk} --json",
                                                         repair_runner=record)
    reported = ps.drives[0]["Path"]
    assert seen[0][-3:] == ["inspect", reported, "--json"]


def test_direct_vhdx_path_on_a_built_vhdx(vhdx, tmp_path):
    """The repair command gets the VHDX file itself (no mount); qemu-img checks it there."""
    ps = FakePowerShell("web01", vhdx)
    result = HyperVAdapter(new_state(tmp_path), runner=ps).rescue(run="qemu-img check -f vhdx {disk}")
    assert result["run"]["exit_code"] == 0
    assert result["run"]["argv"] == ["qemu-img", "check", "-f", "vhdx", str(vhdx)]


def test_restore_then_abort_puts_the_backup_back(vhdx, tmp_path):
    ps = FakePowerShell("web01", vhdx)
    original = sha256(vhdx)
    HyperVAdapter(new_state(tmp_path), runner=ps).rescue()
    with open(vhdx, "r+b") as f:  # what a repair would do: change bytes inside the file
        f.seek(1024 * 1024)
        f.write(b"repaired")
    assert sha256(vhdx) != original
    HyperVAdapter(State.load(tmp_path / "hv.json"), runner=ps).restore()
    assert ps.vm["State"] == "Running" and ps.commands[-1] == "Start-VM -Name 'web01'"
    out = HyperVAdapter(State.load(tmp_path / "hv.json"), runner=ps).abort()
    assert sha256(vhdx) == original
    assert "Stop-VM -Name 'web01' -Force -TurnOff" in ps.commands
    assert ps.vm["State"] == "Running" and out["phase"] == "aborted"


def test_refusals(vhdx, tmp_path):
    checkpoint = FakePowerShell("web01", str(vhdx).replace(".vhdx", "_6F1C.avhdx"))
    with pytest.raises(Unsupported, match="checkpoints"):
        HyperVAdapter(new_state(tmp_path), runner=checkpoint).rescue()
    with pytest.raises(Refused, match="Saved"):
        HyperVAdapter(new_state(tmp_path), runner=FakePowerShell("web01", vhdx, state="Saved")).rescue()
    with pytest.raises(NotFound):
        HyperVAdapter(new_state(tmp_path, vm="nope"), runner=FakePowerShell("web01", vhdx)).rescue()
    assert not (tmp_path / "hv.json").exists()


def test_pick_os_disk():
    ide = {"ControllerType": "IDE", "ControllerNumber": 0, "ControllerLocation": 0, "Path": r"D:\a.vhdx"}
    data = {"ControllerType": "SCSI", "ControllerNumber": 0, "ControllerLocation": 1, "Path": r"D:\b.vhdx"}
    assert pick_os_disk([data, ide], 1) is ide
    with pytest.raises(Refused):
        pick_os_disk([data, {**data, "ControllerLocation": 2}], 2)
    assert pick_os_disk([data, ide], 2, r"d:\B.VHDX") is data
    assert ps_quote("a\u2019b") == "'a\u2019\u2019b'"


def test_cli(vhdx, tmp_path, capsys, monkeypatch):
    import offline_fix.cli.cloud as cli_cloud

    sf = str(tmp_path / "hv.json")
    # on Linux there is no powershell.exe: one line, exit 3
    if shutil.which("powershell.exe") is None:
        assert main(["cloud", "hyperv", "rescue", "--vm", "web01", "--state", sf]) == 3
        assert "powershell.exe not found" in capsys.readouterr().err
    ps = FakePowerShell("web01", vhdx)
    monkeypatch.setattr(cli_cloud, "_powershell", lambda: ps)
    assert main(["cloud", "hyperv", "rescue", "--vm", "web01", "--state", sf, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "Stop-VM -Name 'web01' -Force" in printed and "Copy-Item -LiteralPath" in printed
    assert ps.vm["State"] == "Running"
    assert main(["cloud", "hyperv", "rescue", "--vm", "web01", "--state", sf, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["vhdx_path"] == str(vhdx)
    assert main(["locate", "--state", sf]) == 0
    assert capsys.readouterr().out.strip() == str(vhdx)
    assert main(["cloud", "hyperv", "restore", "--state", sf]) == 0
    assert ps.vm["State"] == "Running"


def test_direct_vhdx_repair_with_offline_fix(image_cache, realdata, tmp_path):
    """The whole Hyper-V path on a built Windows VHDX: rescue hands the VHDX file to a real
    `offline-fix drivers disable`, which changes the registry inside it with no mount at all;
    `offline-fix reg query` reads the result back and qemu-img checks the file."""
    import shlex
    import sys

    from images import specs

    built = image_cache(specs.win7_gpt(system=realdata("regipy/SYSTEM.xz")), "vhdx")
    folder = tmp_path / "Hyper-V Disks"
    folder.mkdir()
    disk = built.copy_to(folder / "o'brien web01.vhdx").path
    ps = FakePowerShell("web01", disk)
    state_dir = tmp_path / "state"
    run = (f"{shlex.quote(sys.executable)} -m offline_fix drivers disable {{disk}} pciide --force "
           f"--backup-dir {shlex.quote(str(state_dir))}")
    result = HyperVAdapter(new_state(tmp_path), runner=ps).rescue(run=run)
    assert result["run"]["exit_code"] == 0
    query = subprocess.run([sys.executable, "-m", "offline_fix", "reg", "query", str(disk),
                            r"HKLM\SYSTEM\ControlSet001\Services\pciide", "/v", "Start"], capture_output=True, text=True)
    assert "Start    REG_DWORD    0x4" in query.stdout, query.stderr
    subprocess.run(["qemu-img", "check", "-f", "vhdx", str(disk)], check=True, capture_output=True)
