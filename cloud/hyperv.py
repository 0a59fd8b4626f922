"""Hyper-V adapter: on the Hyper-V host, stop the VM, back up its VHDX, repair the file directly.

No mount at all: offline-fix's image mode opens the .vhdx file itself. The PowerShell steps
(Hyper-V module: Get-VM, Stop-VM, Get-VMHardDiskDrive, Start-VM; Copy-Item and Get-FileHash for the
backup) run through an injected ``runner(argv) -> CompletedProcess`` so that tests on Linux record
the exact command lines.

rescue:  Get-VM -> Get-VMHardDiskDrive (the OS disk: IDE 0:0 on generation 1, SCSI 0:0 on
         generation 2, or --disk) -> Stop-VM -> Copy-Item the VHDX to a backup, SHA-256 of both
         compared -> optionally run the repair command on the VHDX path.
restore: Start-VM.
abort:   stop the VM if it runs, copy the backup back over the VHDX (SHA-256 checked), start the VM
         if it was running before the rescue.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import PureWindowsPath
from typing import Any, Callable

from offline_fix.errors import CorruptInput, NotFound, Refused, Unsupported, VerificationFailed

from offline_fix.cloud.state import State
from offline_fix.cloud.workflow import Calls, CloudApiError, Workflow, expand_command, run_command

POWERSHELL = ["powershell.exe", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-Command"]
PRELUDE = "$ErrorActionPreference = 'Stop'; "
# PowerShell ends a single-quoted string at any of these; doubling one keeps it literal.
_PS_QUOTES = "'\u2018\u2019\u201a\u201b"
MAX_OUTPUT = 1024 * 1024


class PowerShellOutputError(CorruptInput):
    """A PowerShell command printed something other than the JSON asked for."""


def ps_quote(text: str) -> str:
    """A PowerShell single-quoted literal: nothing inside is expanded."""
    out = "".join(ch * 2 if ch in _PS_QUOTES else ch for ch in text)
    return f"'{out}'"


def default_runner(argv: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise NotFound("powershell.exe not found: the Hyper-V adapter runs on the Hyper-V host") from None


def _as_list(data: Any) -> list:
    """ConvertTo-Json prints a single object for one item, a list for several, nothing for none."""
    if data is None:
        return []
    return data if isinstance(data, list) else [data]


def pick_os_disk(drives: list[dict], generation: int | None, wanted: str | None = None) -> dict:
    """The boot disk: the one asked for, else IDE 0:0 (generation 1) or SCSI 0:0 (generation 2),
    else the only disk."""
    if not drives:
        raise NotFound("the VM has no virtual hard disk")
    if wanted:
        for d in drives:
            if str(d.get("Path") or "").lower() == wanted.lower():
                return d
        raise NotFound("the VM has no such disk", path=wanted, found=[d.get("Path") for d in drives])
    controller = "SCSI" if generation == 2 else "IDE"
    for d in drives:
        if d.get("ControllerType") == controller and d.get("ControllerNumber") == 0 and d.get("ControllerLocation") == 0:
            return d
    if len(drives) == 1:
        return drives[0]
    raise Refused("cannot tell which disk is the OS disk; pick one with --disk",
                  found=[d.get("Path") for d in drives])


def backup_path(path: str, run_id: str, folder: str | None = None) -> str:
    """``D:\\VMs\\web.vhdx`` -> ``D:\\VMs\\web.offline-fix-RUNID.vhdx`` (or in ``folder``), keeping the
    path's own separator."""
    sep = "\\" if "\\" in path else "/"
    parent, _, name = path.rpartition(sep)
    stem, dot, ext = name.rpartition(".")
    target = f"{stem}.offline-fix-{run_id}.{ext}" if dot else f"{name}.offline-fix-{run_id}"
    base = folder.rstrip("\\/") if folder else parent
    return f"{base}{sep}{target}"


class HyperVAdapter:
    provider = "hyperv"

    def __init__(self, state: State, *, runner: Callable[[list[str]], Any] | None = None,
                 calls: Calls | None = None, hook: Callable[[str], None] | None = None) -> None:
        self.state = state
        self.runner = runner or default_runner
        self.calls = calls or Calls()
        self.flow = Workflow(state, self.calls, hook)

    # -- PowerShell plumbing -----------------------------------------------------------------------------
    def argv(self, command: str) -> list[str]:
        return [*POWERSHELL, PRELUDE + command]

    def _ps(self, command: str) -> str:
        proc = self.runner(self.argv(command))
        if proc.returncode != 0:
            first = (proc.stderr or proc.stdout or "").strip().splitlines()
            raise CloudApiError(f"PowerShell failed ({proc.returncode}): {command}: "
                                f"{first[0] if first else 'no message'}")
        out = proc.stdout or ""
        if len(out) > MAX_OUTPUT:
            raise PowerShellOutputError("PowerShell output too large", field=command, expected=f"<= {MAX_OUTPUT}")
        return out

    def _json(self, command: str) -> Any:
        text = self._ps(command).strip().lstrip("\ufeff")
        if not text:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise PowerShellOutputError(f"PowerShell did not print JSON: {exc}", field=command) from None

    def _change(self, command: str) -> None:
        self.calls.change(command, lambda: self._ps(command))

    def _vm(self, name: str) -> dict:
        data = _as_list(self._json(
            f"Get-VM -Name {ps_quote(name)} | Select-Object Name,Id,Generation,"
            "@{n='State';e={[string]$_.State}} | ConvertTo-Json -Compress"))
        if len(data) != 1 or not isinstance(data[0], dict):
            raise NotFound("no such Hyper-V VM (or the name is ambiguous)", path=name)
        return data[0]

    def _hash(self, path: str) -> str:
        return self._ps(f"(Get-FileHash -Algorithm SHA256 -LiteralPath {ps_quote(path)}).Hash").strip().lower()

    # -- rescue ------------------------------------------------------------------------------------------
    def describe(self, vm_name: str, disk: str | None, backup_dir: str | None) -> dict:
        vm = self._vm(vm_name)
        if vm.get("State") in ("Saved", "Paused"):
            raise Refused(f"the VM is {vm['State']}: resume it or discard its saved state first, a saved "
                          "memory image would not match a repaired disk", path=vm_name, found=vm["State"])
        drives = _as_list(self._json(
            f"Get-VMHardDiskDrive -VMName {ps_quote(vm_name)} | Select-Object "
            "@{n='ControllerType';e={[string]$_.ControllerType}},ControllerNumber,ControllerLocation,Path,"
            "DiskNumber | ConvertTo-Json -Compress"))
        chosen = pick_os_disk(drives, vm.get("Generation"), disk)
        path = chosen.get("Path") or ""
        suffix = PureWindowsPath(path).suffix.lower()
        if chosen.get("DiskNumber") is not None or suffix not in (".vhdx", ".vhd", ".avhdx", ".avhd"):
            raise Unsupported("the OS disk is a pass-through physical disk, not a VHD/VHDX file", path=path)
        if suffix in (".avhdx", ".avhd"):
            raise Unsupported("the VM has checkpoints: its disk is a differencing disk (.avhdx). Delete or "
                              "merge the checkpoints first (Remove-VMCheckpoint merges them)", path=path)
        backup = backup_path(path, self.state.run_id, backup_dir)
        return {"vm": vm["Name"], "vm_id": vm.get("Id"), "generation": vm.get("Generation"),
                "original_state": vm.get("State"), "vhdx_path": path, "backup_path": backup,
                "controller": f"{chosen.get('ControllerType')} {chosen.get('ControllerNumber')}:"
                              f"{chosen.get('ControllerLocation')}"}

    def rescue(self, vm: str | None = None, *, disk: str | None = None, backup_dir: str | None = None,
               turn_off: bool = False, run: str | None = None,
               repair_runner: Callable[..., Any] | None = None) -> dict:
        st = self.state
        self.flow.require_phase(("new", "rescuing"), "rescue")
        vm = vm or st.params.get("vm")
        if not vm:
            raise Refused("rescue needs --vm")
        if st.is_done("rescue.describe"):
            facts = st.facts
        else:
            facts = self.flow.record("rescue.describe", self.describe(vm, disk or st.params.get("disk"),
                                                                      backup_dir or st.params.get("backup_dir")))
            st.set_facts(facts)
        st.set_phase("rescuing")
        self.flow.step("rescue.stop", lambda: self._stop(facts["vm"], turn_off))
        backup = self.flow.step("rescue.backup", lambda: self._backup(facts))
        if backup:
            st.add_artifact("backup_path", facts["backup_path"])
        st.set_phase("rescued")
        result = {"phase": "rescued", "vm": facts["vm"], "vhdx_path": facts["vhdx_path"],
                  "backup_path": facts["backup_path"], "backup_sha256": (backup or {}).get("sha256")}
        if run:
            result["run"] = self.flow.step("rescue.run", lambda: run_command(
                expand_command(run, facts["vhdx_path"]), repair_runner))
        return result

    def _stop(self, name: str, turn_off: bool) -> dict:
        state = self._vm(name).get("State")
        if state != "Off":
            self._change(f"Stop-VM -Name {ps_quote(name)} -Force" + (" -TurnOff" if turn_off else ""))
            if not self.calls.dry_run and self._vm(name).get("State") != "Off":
                raise VerificationFailed("the VM did not stop", path=name, expected="Off")
        return {"was": state}

    def _backup(self, facts: dict) -> dict:
        src, dst = facts["vhdx_path"], facts["backup_path"]
        self._change(f"Copy-Item -LiteralPath {ps_quote(src)} -Destination {ps_quote(dst)} -Force")
        if self.calls.dry_run:
            return {}
        a, b = self._hash(src), self._hash(dst)
        if not a or a != b:
            raise VerificationFailed("the backup copy differs from the VHDX", path=dst, expected=a, found=b)
        return {"sha256": a}

    # -- restore / abort ----------------------------------------------------------------------------------
    def restore(self) -> dict:
        st = self.state
        self.flow.require_phase(("rescued", "restoring"), "restore")
        st.set_phase("restoring")
        self.flow.step("restore.start", lambda: self._start(st.facts["vm"]))
        st.add_note("Hyper-V has no console screenshot API here: look at the VM in vmconnect / Hyper-V Manager")
        st.set_phase("restored")
        return {"phase": "restored", "vm": st.facts["vm"], "backup_path": st.facts["backup_path"]}

    def _start(self, name: str) -> dict:
        state = self._vm(name).get("State")
        if state != "Running":
            self._change(f"Start-VM -Name {ps_quote(name)}")
        return {"was": state}

    def abort(self) -> dict:
        st = self.state
        facts = st.facts
        if not facts.get("vhdx_path"):
            st.set_phase("aborted")
            return {"phase": "aborted", "changed": False, "why": "nothing had been changed yet"}
        st.set_phase("aborting")
        backup = st.step("rescue.backup")
        if backup and backup["status"] == "done":
            self.flow.step("abort.stop", lambda: self._stop(facts["vm"], True))
            self.flow.step("abort.put-back", lambda: self._put_back(facts, backup["result"]["sha256"]))
        if facts.get("original_state") == "Running":
            self.flow.step("abort.start", lambda: self._start(facts["vm"]))
        st.set_phase("aborted")
        return {"phase": "aborted", "vm": facts["vm"], "vhdx_path": facts["vhdx_path"],
                "backup_path": facts["backup_path"]}

    def _put_back(self, facts: dict, sha256: str) -> dict:
        src, dst = facts["backup_path"], facts["vhdx_path"]
        if not self.calls.dry_run and self._hash(dst) == sha256:
            return {"copied": False}
        self._change(f"Copy-Item -LiteralPath {ps_quote(src)} -Destination {ps_quote(dst)} -Force")
        if not self.calls.dry_run:
            found = self._hash(dst)
            if found != sha256:
                raise VerificationFailed("the VHDX put back differs from the backup", path=dst,
                                         expected=sha256, found=found)
        return {"copied": True}

    def live(self) -> dict:
        facts = self.state.facts
        if not facts.get("vm"):
            return {}
        return {"vm_state": self._vm(facts["vm"]).get("State")}
