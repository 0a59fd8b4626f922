"""Azure adapter: copy a broken VM's OS disk to a helper VM, then swap the repaired copy in.

rescue:  get the VM and its managed OS disk -> snapshot the OS disk -> create a disk from the
         snapshot (same location and zone, SKU, Hyper-V generation, security type, encryption) ->
         attach it to the helper at a free LUN. The broken VM is not touched.
restore: detach the copy from the helper -> deallocate the broken VM -> swap its OS disk to the
         repaired copy (the original disk stays, as the undo) -> start -> save the boot
         diagnostics screenshot and serial log where available.
abort:   detach the copy from the helper; if the OS disk was swapped, deallocate and swap the
         original back; start the VM if it was running. Snapshot and copy are kept (listed).

The ComputeManagementClient is injected; the request bodies follow the ARM REST API shapes
(Microsoft.Compute virtualMachines, disks and snapshots, azure-rest-api-specs
specification/compute/resource-manager/Microsoft.Compute). Resource names are derived from the
rescue's run id, so a resumed run finds what an interrupted one created.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from offline_fix.errors import NotFound, PermissionDenied, Refused, Unsupported

from offline_fix.cloud.state import State, write_artifact
from offline_fix.cloud.workflow import Calls, CloudApiError, Workflow, expand_command, format_call, run_command

TAG_KEY = "offline-fix-rescue"
MAX_LUN = 63
MAX_NAME = 80  # managed disk and snapshot names: 1-80 characters
MAX_BLOB = 64 * 1024 * 1024
_ID = re.compile(r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Compute/"
                 r"(?P<type>[^/]+)/(?P<name>[^/]+)$", re.I)


def parse_id(resource_id: str) -> dict:
    m = _ID.match(resource_id or "")
    if not m:
        raise NotFound("not a Microsoft.Compute resource id", path=resource_id)
    return m.groupdict()


def power_state(instance_view: dict) -> str | None:
    """'running', 'deallocated', 'stopped' ... from an instance view's PowerState/ status code."""
    for status in instance_view.get("statuses") or []:
        code = status.get("code") or ""
        if code.startswith("PowerState/"):
            return code.split("/", 1)[1]
    return None


def free_lun(helper: dict) -> int:
    used = {d.get("lun") for d in _props(helper).get("storageProfile", {}).get("dataDisks") or []}
    for lun in range(MAX_LUN + 1):
        if lun not in used:
            return lun
    raise Refused("the helper has no free LUN", expected=f"a LUN in 0..{MAX_LUN}")


def _props(resource: dict) -> dict:
    return resource.get("properties") or {}


def _same_id(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and a.lower() == b.lower()


def resource_name(prefix: str, run_id: str, kind: str) -> str:
    suffix = f"-{kind}-{run_id}"
    return prefix[: MAX_NAME - len(suffix)] + suffix


class AzureAdapter:
    """One rescue, bound to a state file. ``compute`` is an azure.mgmt.compute ComputeManagementClient;
    ``download(url) -> bytes`` fetches boot-diagnostics blobs (a SAS URL, never stored)."""

    provider = "azure"

    def __init__(self, compute: Any, state: State, *, calls: Calls | None = None,
                 hook: Callable[[str], None] | None = None,
                 download: Callable[[str], bytes] | None = None) -> None:
        self.compute = compute
        self.state = state
        self.calls = calls or Calls()
        self.flow = Workflow(state, self.calls, hook)
        self.download = download

    # -- API plumbing ---------------------------------------------------------------------------------
    def _api(self, label: str, fn: Callable[[], Any]) -> Any:
        from azure.core.exceptions import (AzureError, ClientAuthenticationError, HttpResponseError,
                                           ResourceNotFoundError)

        try:
            return fn()
        except ResourceNotFoundError as exc:
            raise NotFound(f"Azure {label}: not found: {_message(exc)}") from None
        except ClientAuthenticationError as exc:
            raise PermissionDenied(f"Azure {label}: authentication failed: {_message(exc)}") from None
        except HttpResponseError as exc:
            if exc.status_code == 403:
                raise PermissionDenied(f"Azure {label}: forbidden: {_message(exc)}") from None
            raise CloudApiError(f"Azure {label} failed ({exc.status_code}): {_message(exc)}") from None
        except AzureError as exc:
            raise CloudApiError(f"Azure {label} failed: {_message(exc)}") from None

    def _get(self, kind: str, rg: str, name: str) -> dict:
        ops = getattr(self.compute, kind)
        return self._api(f"{kind}.get {rg}/{name}", lambda: ops.get(rg, name)).as_dict()

    def _find(self, kind: str, rg: str, name: str) -> dict | None:
        try:
            return self._get(kind, rg, name)
        except NotFound:
            return None

    def _power(self, rg: str, name: str) -> str | None:
        view = self._api(f"virtual_machines.instance_view {rg}/{name}",
                         lambda: self.compute.virtual_machines.instance_view(rg, name))
        return power_state(view.as_dict())

    def _lro(self, kind: str, op: str, *args: str, body: dict | None = None) -> None:
        """A long-running operation (begin_*), polled to the end as ARM says."""
        shown = [repr(a) for a in args] + ([_summary(body)] if body is not None else [])
        call_args = (*args, body) if body is not None else args
        fn = getattr(getattr(self.compute, kind), op)
        self.calls.change(f"{kind}.{op}({', '.join(shown)})",
                          lambda: self._api(f"{kind}.{op}", lambda: fn(*call_args).result()))

    # -- rescue ---------------------------------------------------------------------------------------
    def describe(self, rg: str, vm_name: str, helper_rg: str, helper_name: str) -> dict:
        if rg.lower() == helper_rg.lower() and vm_name.lower() == helper_name.lower():
            raise Refused("the helper must be another VM than the broken one", path=vm_name)
        vm = self._get("virtual_machines", rg, vm_name)
        os_disk = _props(vm).get("storageProfile", {}).get("osDisk") or {}
        disk_id = (os_disk.get("managedDisk") or {}).get("id")
        if not disk_id:
            raise Unsupported("the OS disk is not a managed disk (unmanaged VHD in a storage account)",
                              path=vm_name, field="storageProfile.osDisk.managedDisk")
        where = parse_id(disk_id)
        disk = self._get("disks", where["rg"], where["name"])
        dprops = _props(disk)
        security = (dprops.get("securityProfile") or {}).get("securityType")
        if security and security.lower().startswith("confidentialvm"):
            raise Unsupported("confidential VM OS disks (encrypted VM guest state) cannot be attached to a helper",
                              path=disk_id, field="securityProfile.securityType", found=security)
        helper = self._get("virtual_machines", helper_rg, helper_name)
        location, helper_location = disk.get("location"), helper.get("location")
        if (location or "").lower() != (helper_location or "").lower():
            raise Refused(f"the OS disk is in {location} but the helper in {helper_location}: a managed disk can "
                          f"only be attached to a VM in its own region. Use a helper in {location}",
                          path=helper_name, field="location", expected=location, found=helper_location)
        zones, helper_zones = disk.get("zones") or [], helper.get("zones") or []
        if zones and sorted(zones) != sorted(helper_zones):
            raise Refused(f"the OS disk is in zone {','.join(zones)} but the helper in "
                          f"{','.join(helper_zones) or 'no zone'}: a zonal disk can only be attached to a VM in "
                          f"the same zone. Use a helper in zone {','.join(zones)}",
                          path=helper_name, field="zones", expected=zones, found=helper_zones)
        run_id = self.state.run_id
        snapshot_name = resource_name(where["name"], run_id, "offline-fix-backup")
        copy_name = resource_name(where["name"], run_id, "offline-fix-copy")
        encryption = dprops.get("encryption") or {}
        facts = {
            "resource_group": rg, "vm": vm_name, "helper_resource_group": helper_rg, "helper": helper_name,
            "location": location, "zones": zones, "vm_zones": vm.get("zones") or [],
            "original_disk_id": disk_id, "original_disk_name": disk.get("name"), "disk_resource_group": where["rg"],
            "sku": (disk.get("sku") or {}).get("name"), "hyper_v_generation": dprops.get("hyperVGeneration"),
            "security_type": security, "os_type": dprops.get("osType"), "disk_size_gb": dprops.get("diskSizeGB"),
            "encryption_type": encryption.get("type"), "disk_encryption_set_id": encryption.get("diskEncryptionSetId"),
            "ade": bool((dprops.get("encryptionSettingsCollection") or {}).get("enabled")),
            "original_power": self._power(rg, vm_name),
            "snapshot_name": snapshot_name,
            "snapshot_id": disk_id.rsplit("/disks/", 1)[0] + f"/snapshots/{snapshot_name}",
            "copy_name": copy_name,
            "copy_id": disk_id.rsplit("/disks/", 1)[0] + f"/disks/{copy_name}",
        }
        return facts

    def rescue(self, rg: str | None = None, vm: str | None = None, helper: str | None = None,
               helper_rg: str | None = None, *, run: str | None = None,
               locate: Callable[[dict], str] | None = None, runner: Callable[..., Any] | None = None) -> dict:
        st = self.state
        self.flow.require_phase(("new", "rescuing"), "rescue")
        p = st.params
        rg, vm, helper = rg or p.get("resource_group"), vm or p.get("vm"), helper or p.get("helper")
        helper_rg = helper_rg or p.get("helper_resource_group") or rg
        if not (rg and vm and helper):
            raise Refused("rescue needs --resource-group, --vm and --helper")
        if st.is_done("rescue.describe"):
            facts = st.facts
        else:
            facts = self.flow.record("rescue.describe", self.describe(rg, vm, helper_rg, helper))
            st.set_facts(facts)
        for note in self._notes(facts):
            st.add_note(note)
            self.calls.note(f"note: {note}")
        st.set_phase("rescuing")
        self.flow.step("rescue.snapshot", lambda: self._snapshot(facts))
        self.flow.step("rescue.copy", lambda: self._copy(facts))
        attached = self.flow.step("rescue.attach-helper", lambda: self._attach_helper(facts))
        st.set_facts({"helper_lun": attached["lun"]})
        st.set_phase("rescued")
        result = {"phase": "rescued", "snapshot_id": facts["snapshot_id"], "copy_id": facts["copy_id"],
                  "helper": facts["helper"], "helper_lun": attached["lun"]}
        if run:
            if locate is None:
                raise Refused("--run needs the attached disk located on this machine")
            result["run"] = self.flow.step("rescue.run", lambda: run_command(expand_command(run, locate(st.doc)), runner))
        return result

    @staticmethod
    def _notes(facts: dict) -> list[str]:
        notes = []
        if facts.get("disk_encryption_set_id"):
            notes.append(f"the OS disk is encrypted with customer-managed keys (disk encryption set "
                         f"{facts['disk_encryption_set_id']}); the snapshot and the copy use the same set, so the "
                         f"identity running offline-fix needs read access to it")
        if facts.get("ade"):
            notes.append("the OS disk uses Azure Disk Encryption (BitLocker inside Windows): offline-fix needs the "
                         "BitLocker key from the VM's Key Vault to repair it on the helper")
        if facts.get("security_type"):
            notes.append(f"the disk's security type {facts['security_type']} is kept on the copy")
        return notes

    def _tags(self) -> dict:
        return {TAG_KEY: self.state.run_id}

    def _snapshot(self, facts: dict) -> dict:
        rg, name = facts["disk_resource_group"], facts["snapshot_name"]
        if self._find("snapshots", rg, name) is None:
            props: dict = {"creationData": {"createOption": "Copy", "sourceResourceId": facts["original_disk_id"]},
                           "incremental": False}
            for key, fact in (("osType", "os_type"), ("hyperVGeneration", "hyper_v_generation")):
                if facts.get(fact):
                    props[key] = facts[fact]
            if facts.get("disk_encryption_set_id"):
                props["encryption"] = {"type": facts["encryption_type"],
                                       "diskEncryptionSetId": facts["disk_encryption_set_id"]}
            body = {"location": facts["location"], "tags": self._tags(), "sku": {"name": "Standard_LRS"},
                    "properties": props}
            self._lro("snapshots", "begin_create_or_update", rg, name, body=body)
        return {"snapshot_id": facts["snapshot_id"]}

    def _copy(self, facts: dict) -> dict:
        rg, name = facts["disk_resource_group"], facts["copy_name"]
        if self._find("disks", rg, name) is None:
            props: dict = {"creationData": {"createOption": "Copy", "sourceResourceId": facts["snapshot_id"]}}
            for key, fact in (("osType", "os_type"), ("hyperVGeneration", "hyper_v_generation")):
                if facts.get(fact):
                    props[key] = facts[fact]
            if facts.get("security_type"):
                props["securityProfile"] = {"securityType": facts["security_type"]}
            if facts.get("disk_encryption_set_id"):
                props["encryption"] = {"type": facts["encryption_type"],
                                       "diskEncryptionSetId": facts["disk_encryption_set_id"]}
            body = {"location": facts["location"], "tags": self._tags(), "properties": props}
            if facts.get("sku"):
                body["sku"] = {"name": facts["sku"]}
            if facts.get("zones"):
                body["zones"] = facts["zones"]
            self._lro("disks", "begin_create_or_update", rg, name, body=body)
        return {"copy_id": facts["copy_id"]}

    def _vm_body(self, rg: str, name: str) -> dict:
        return self._api(f"virtual_machines.get {rg}/{name}",
                         lambda: self.compute.virtual_machines.get(rg, name)).as_dict(exclude_readonly=True)

    def _attach_helper(self, facts: dict) -> dict:
        rg, name = facts["helper_resource_group"], facts["helper"]
        body = self._vm_body(rg, name)
        disks = body.setdefault("properties", {}).setdefault("storageProfile", {}).setdefault("dataDisks", [])
        for d in disks:
            if _same_id((d.get("managedDisk") or {}).get("id"), facts["copy_id"]):
                return {"lun": d.get("lun"), "attached": False}
        lun = free_lun(body)
        disks.append({"lun": lun, "name": facts["copy_name"], "createOption": "Attach", "caching": "None",
                      "managedDisk": {"id": facts["copy_id"]}})
        self._lro("virtual_machines", "begin_create_or_update", rg, name, body=body)
        return {"lun": lun, "attached": True}

    # -- restore --------------------------------------------------------------------------------------
    def restore(self) -> dict:
        st = self.state
        self.flow.require_phase(("rescued", "restoring"), "restore")
        facts = st.facts
        st.set_phase("restoring")
        self.flow.step("restore.detach-helper", lambda: self._detach_helper(facts))
        self.flow.step("restore.deallocate", lambda: self._deallocate(facts))
        self.flow.step("restore.swap-os-disk", lambda: self._swap(facts, facts["copy_id"], facts["copy_name"]))
        self.flow.step("restore.start", lambda: self._start(facts))
        evidence = self.flow.step("restore.evidence", self.evidence)
        st.set_phase("restored")
        return {"phase": "restored", "vm": facts["vm"], "os_disk": facts["copy_id"],
                "original_disk_kept": facts["original_disk_id"], "evidence": evidence}

    def _detach_helper(self, facts: dict) -> dict:
        rg, name = facts["helper_resource_group"], facts["helper"]
        body = self._vm_body(rg, name)
        disks = _props(body).get("storageProfile", {}).get("dataDisks") or []
        keep = [d for d in disks if not _same_id((d.get("managedDisk") or {}).get("id"), facts["copy_id"])]
        if len(keep) == len(disks):
            return {"detached": False}
        body["properties"]["storageProfile"]["dataDisks"] = keep
        self._lro("virtual_machines", "begin_create_or_update", rg, name, body=body)
        return {"detached": True}

    def _deallocate(self, facts: dict) -> dict:
        rg, name = facts["resource_group"], facts["vm"]
        power = self._power(rg, name)
        if power != "deallocated":
            self._lro("virtual_machines", "begin_deallocate", rg, name)
        return {"was": power}

    def _swap(self, facts: dict, disk_id: str, disk_name: str) -> dict:
        rg, name = facts["resource_group"], facts["vm"]
        body = self._vm_body(rg, name)
        os_disk = body["properties"]["storageProfile"]["osDisk"]
        if _same_id((os_disk.get("managedDisk") or {}).get("id"), disk_id):
            return {"swapped": False}
        os_disk["managedDisk"] = {**(os_disk.get("managedDisk") or {}), "id": disk_id}
        os_disk["name"] = disk_name
        self._lro("virtual_machines", "begin_create_or_update", rg, name, body=body)
        return {"swapped": True, "os_disk": disk_id}

    def _start(self, facts: dict) -> dict:
        rg, name = facts["resource_group"], facts["vm"]
        power = self._power(rg, name)
        if power not in ("running", "starting"):
            self._lro("virtual_machines", "begin_start", rg, name)
        return {"was": power}

    def evidence(self) -> dict:
        """Save the boot diagnostics screenshot and serial log (the SAS URLs are used, never stored)."""
        if self.calls.dry_run:
            self.calls.planned.append("virtual_machines.retrieve_boot_diagnostics_data (saved next to the state)")
            return {}
        facts = self.state.facts
        rg, name = facts["resource_group"], facts["vm"]
        try:
            data = self._api("virtual_machines.retrieve_boot_diagnostics_data", lambda:
                             self.compute.virtual_machines.retrieve_boot_diagnostics_data(
                                 rg, name, sas_uri_expiration_time_in_minutes=10)).as_dict()
        except (CloudApiError, NotFound, PermissionDenied) as exc:
            self.state.add_note(f"boot diagnostics not available: {exc}")
            return {"saved": None, "why": str(exc)}
        out = {}
        for key, suffix in (("consoleScreenshotBlobUri", "screenshot"), ("serialConsoleLogBlobUri", "serial.txt")):
            url = data.get(key)
            if not url or self.download is None:
                out[suffix] = {"saved": None, "why": "no URL (boot diagnostics off?)" if not url else "no downloader"}
                continue
            try:
                blob = self.download(url)
            except OSError as exc:
                out[suffix] = {"saved": None, "why": f"download failed: {exc}"}
                continue
            if suffix == "screenshot":
                suffix = "screenshot." + _image_ext(blob)
            out[suffix] = {"saved": write_artifact(self.state.path, suffix, blob), "bytes": len(blob)}
            self.state.add_artifact(suffix, out[suffix]["saved"])
        return out

    # -- abort ----------------------------------------------------------------------------------------
    def abort(self) -> dict:
        st = self.state
        facts = st.facts
        if not facts.get("copy_id"):
            st.set_phase("aborted")
            return {"phase": "aborted", "changed": False, "why": "nothing had been changed yet"}
        st.set_phase("aborting")
        self.flow.step("abort.detach-helper", lambda: self._detach_helper(facts))
        self.flow.step("abort.swap-back", lambda: self._swap_back(facts))
        if facts.get("original_power") in ("running", "starting"):
            self.flow.step("abort.start", lambda: self._start(facts))
        st.set_phase("aborted")
        kept = [facts["snapshot_id"], facts["copy_id"]]
        st.add_note("abort keeps the backup snapshot and the disk copy; delete them when no longer needed: "
                    + ", ".join(kept))
        return {"phase": "aborted", "vm": facts["vm"], "os_disk": facts["original_disk_id"], "kept": kept}

    def _swap_back(self, facts: dict) -> dict:
        vm = self._get("virtual_machines", facts["resource_group"], facts["vm"])
        current = (_props(vm).get("storageProfile", {}).get("osDisk", {}).get("managedDisk") or {}).get("id")
        if _same_id(current, facts["original_disk_id"]):
            return {"swapped": False}
        self._deallocate(facts)
        return self._swap(facts, facts["original_disk_id"], facts["original_disk_name"])

    # -- status ---------------------------------------------------------------------------------------
    def live(self) -> dict:
        facts = self.state.facts
        if not facts.get("vm"):
            return {}
        vm = self._get("virtual_machines", facts["resource_group"], facts["vm"])
        helper = self._get("virtual_machines", facts["helper_resource_group"], facts["helper"])
        data_disks = _props(helper).get("storageProfile", {}).get("dataDisks") or []
        on_helper = [d.get("lun") for d in data_disks
                     if _same_id((d.get("managedDisk") or {}).get("id"), facts["copy_id"])]
        return {
            "os_disk": (_props(vm).get("storageProfile", {}).get("osDisk", {}).get("managedDisk") or {}).get("id"),
            "power": self._power(facts["resource_group"], facts["vm"]),
            "copy_on_helper_lun": on_helper[0] if on_helper else None,
            "snapshot_exists": self._find("snapshots", facts["disk_resource_group"], facts["snapshot_name"]) is not None,
            "copy_exists": self._find("disks", facts["disk_resource_group"], facts["copy_name"]) is not None,
        }


def download_blob(url: str, *, verify: bool | str = True, timeout: float = 60) -> bytes:
    """Fetch a boot-diagnostics blob by its (short-lived SAS) URL, at most MAX_BLOB bytes."""
    import requests

    data = bytearray()
    with requests.get(url, stream=True, timeout=timeout, verify=verify) as resp:
        if resp.status_code != 200:
            raise OSError(f"HTTP {resp.status_code}")
        for chunk in resp.iter_content(65536):
            data += chunk
            if len(data) > MAX_BLOB:
                raise OSError(f"blob larger than {MAX_BLOB} bytes")
    return bytes(data)


def _message(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def _summary(body: dict) -> str:
    """The part of a PUT body worth printing: what is created from what, or which disks are attached."""
    props = body.get("properties", {})
    if "creationData" in props:
        return f"creationData={props['creationData']!r}"
    storage = props.get("storageProfile", {})
    os_disk = (storage.get("osDisk") or {}).get("managedDisk", {}).get("id")
    data = [(d.get("lun"), (d.get("managedDisk") or {}).get("id")) for d in storage.get("dataDisks") or []]
    return f"osDisk={os_disk!r}, dataDisks={data!r}"


def _image_ext(blob: bytes) -> str:
    if blob.startswith(b"\x89PNG"):
        return "png"
    if blob.startswith(b"\xff\xd8"):
        return "jpg"
    if blob.startswith(b"BM"):
        return "bmp"
    return "bin"
