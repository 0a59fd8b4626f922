"""AWS adapter: move a broken EC2 instance's root EBS volume to a helper instance and back.

rescue:  describe (root device name, root volume, zone) -> stop and wait -> snapshot the root
         volume (tagged, so a resumed run finds it) -> detach and wait -> attach to the helper at a
         free device name and wait -> optionally run the repair command on the located device.
restore: detach from the helper -> attach back under the root device name -> put back
         DeleteOnTermination -> start and wait -> save the console output and a screenshot.
abort:   whatever was done, put the volume back as the root device and restart the instance if
         it was running before the rescue. The backup snapshot is kept.

The EC2 client is injected (boto3 ``client("ec2")``); boto3 itself is never imported here except
for its exception types, inside functions. API reference: EC2 API, DescribeInstances,
StopInstances, CreateSnapshot, DetachVolume, AttachVolume, ModifyInstanceAttribute,
GetConsoleOutput, GetConsoleScreenshot.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any, Callable

from offline_fix.errors import NotFound, PermissionDenied, Refused, Unsupported

from offline_fix.cloud.state import State, write_artifact
from offline_fix.cloud.workflow import Calls, CloudApiError, Workflow, expand_command, format_call, run_command

TAG_KEY = "offline-fix:rescue"
# Device names AWS recommends for EBS data volumes (Linux: /dev/sd[f-p], Windows: xvd[f-p]).
DEVICE_LETTERS = "fghijklmnop"
NOT_FOUND_CODES = ("InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed", "InvalidVolume.NotFound",
                   "InvalidVolumeID.Malformed", "InvalidSnapshot.NotFound")
DENIED_CODES = ("UnauthorizedOperation", "AuthFailure", "AccessDenied", "AccessDeniedException",
                "OptInRequired", "Blocked")
KMS_PERMISSIONS = ("kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey",
                   "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncrypt*")


def device_letter(name: str) -> str:
    """The letter that identifies a device name whatever its prefix: /dev/sdf, xvdf, /dev/xvdf1 -> f."""
    base = name.rsplit("/", 1)[-1]
    for prefix in ("xvd", "sd"):
        if base.startswith(prefix) and len(base) > len(prefix):
            return base[len(prefix)]
    return base


def free_device(helper: dict) -> str:
    """The first recommended device name not used on the helper."""
    used = {device_letter(m.get("DeviceName", "")) for m in helper.get("BlockDeviceMappings", [])}
    used.add(device_letter(helper.get("RootDeviceName", "")))
    windows = helper.get("Platform") == "windows"
    for letter in DEVICE_LETTERS:
        if letter not in used:
            return f"xvd{letter}" if windows else f"/dev/sd{letter}"
    raise Refused("the helper has no free device name left", field="BlockDeviceMappings",
                  expected=f"one of sd[{DEVICE_LETTERS[0]}-{DEVICE_LETTERS[-1]}] free")


def encryption_note(volume_id: str, kms_key_id: str | None) -> str:
    key = kms_key_id or "the account's default EBS key (alias/aws/ebs)"
    return (
        f"volume {volume_id} is encrypted with KMS key {key}. Its snapshot is encrypted with the same key, "
        f"and attaching it to the helper uses that key: the identity running offline-fix needs "
        f"{', '.join(KMS_PERMISSIONS)} on it (key policy or grant), the helper must be in the same account "
        f"and region, and the key must be enabled. If Windows inside also uses BitLocker, offline-fix needs "
        f"the recovery key as well."
    )


class AwsAdapter:
    """One rescue, bound to a state file. ``ec2`` is a boto3 EC2 client."""

    provider = "aws"

    def __init__(
        self,
        ec2: Any,
        state: State,
        *,
        calls: Calls | None = None,
        hook: Callable[[str], None] | None = None,
        wait_delay: float = 5,
        wait_attempts: int = 120,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.ec2 = ec2
        self.state = state
        self.calls = calls or Calls()
        self.flow = Workflow(state, self.calls, hook)
        self.wait_delay = wait_delay
        self.wait_attempts = wait_attempts
        self.sleep = sleep

    # -- API plumbing ---------------------------------------------------------------------------------
    def _api(self, op: str, **params: Any) -> dict:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, WaiterError
        from botocore.parsers import ResponseParserError

        try:
            return getattr(self.ec2, op)(**params)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code, message = err.get("Code", "?"), err.get("Message", str(exc))
            text = f"AWS {op} failed: {code}: {message}"
            if code in NOT_FOUND_CODES:
                raise NotFound(text) from None
            if code in DENIED_CODES:
                raise PermissionDenied(text) from None
            raise CloudApiError(text) from None
        except NoCredentialsError:
            raise PermissionDenied("no AWS credentials found (environment, profile or instance role)") from None
        except WaiterError as exc:
            raise CloudApiError(f"AWS wait failed: {exc}") from None
        except (BotoCoreError, ResponseParserError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CloudApiError(f"AWS {op} failed: {first}") from None

    def _change(self, op: str, fake: Any = None, **params: Any) -> Any:
        return self.calls.change(format_call(f"ec2.{op}", params), lambda: self._api(op, **params), fake)

    def _wait(self, waiter: str, **params: Any) -> None:
        def run() -> None:
            from botocore.exceptions import WaiterError

            try:
                self.ec2.get_waiter(waiter).wait(
                    WaiterConfig={"Delay": self.wait_delay, "MaxAttempts": self.wait_attempts}, **params)
            except WaiterError as exc:
                raise CloudApiError(f"AWS wait {waiter} failed: {exc}") from None

        self.calls.wait(format_call(waiter, params), run)

    def _instance(self, instance_id: str) -> dict:
        resp = self._api("describe_instances", InstanceIds=[instance_id])
        for reservation in resp.get("Reservations", []):
            for inst in reservation.get("Instances", []):
                if inst.get("InstanceId") == instance_id:
                    return inst
        raise NotFound("no such EC2 instance", path=instance_id)

    def _volume(self, volume_id: str) -> dict:
        vols = self._api("describe_volumes", VolumeIds=[volume_id]).get("Volumes", [])
        if len(vols) != 1:
            raise NotFound("no such EBS volume", path=volume_id)
        return vols[0]

    @staticmethod
    def _attachment(volume: dict) -> dict | None:
        live = [a for a in volume.get("Attachments", []) if a.get("State") in ("attaching", "attached", "busy")]
        return live[0] if live else None

    # -- rescue ---------------------------------------------------------------------------------------
    def describe(self, instance_id: str, helper_id: str) -> dict:
        """Read everything the later steps and the undo need, before changing anything."""
        if instance_id == helper_id:
            raise Refused("the helper must be another instance than the broken one", path=instance_id)
        inst = self._instance(instance_id)
        helper = self._instance(helper_id)
        state_name = inst.get("State", {}).get("Name")
        if state_name in ("shutting-down", "terminated"):
            raise Refused("the broken instance is terminated", path=instance_id, found=state_name)
        if helper.get("State", {}).get("Name") in ("shutting-down", "terminated"):
            raise Refused("the helper instance is terminated", path=helper_id)
        if inst.get("RootDeviceType", "ebs") != "ebs":
            raise Unsupported("the root device is not an EBS volume (instance store)", path=instance_id,
                              found=inst.get("RootDeviceType"))
        root_device = inst.get("RootDeviceName")
        mapping = next((m for m in inst.get("BlockDeviceMappings", []) if m.get("DeviceName") == root_device), None)
        if not root_device or mapping is None or "Ebs" not in mapping:
            raise NotFound("the instance has no EBS volume at its root device", path=instance_id,
                           field="RootDeviceName", found=root_device)
        volume_id = mapping["Ebs"]["VolumeId"]
        volume = self._volume(volume_id)
        zone = volume.get("AvailabilityZone") or inst.get("Placement", {}).get("AvailabilityZone")
        helper_zone = helper.get("Placement", {}).get("AvailabilityZone")
        if zone != helper_zone:
            raise Refused(
                f"the root volume {volume_id} is in {zone} but the helper {helper_id} is in {helper_zone}: "
                f"an EBS volume can only be attached to an instance in its own Availability Zone. "
                f"Use a helper in {zone}",
                path=helper_id, field="AvailabilityZone", expected=zone, found=helper_zone,
            )
        facts = {
            "instance_id": instance_id,
            "helper_id": helper_id,
            "region": getattr(getattr(self.ec2, "meta", None), "region_name", None),
            "root_device": root_device,
            "volume_id": volume_id,
            "zone": zone,
            "helper_zone": helper_zone,
            "helper_platform": helper.get("Platform", "linux"),
            "original_state": state_name,
            "delete_on_termination": bool(mapping["Ebs"].get("DeleteOnTermination", False)),
            "volume_size_gib": volume.get("Size"),
            "encrypted": bool(volume.get("Encrypted", False)),
            "kms_key_id": volume.get("KmsKeyId"),
        }
        return facts

    def rescue(self, instance_id: str | None = None, helper_id: str | None = None, *, snapshot: bool = True,
               force_stop: bool = False, run: str | None = None,
               locate: Callable[[dict], str] | None = None, runner: Callable[..., Any] | None = None) -> dict:
        st = self.state
        self.flow.require_phase(("new", "rescuing"), "rescue")
        instance_id = instance_id or st.params.get("instance")
        helper_id = helper_id or st.params.get("helper")
        if not instance_id or not helper_id:
            raise Refused("rescue needs --instance and --helper")
        if st.is_done("rescue.describe"):
            facts = st.facts
        else:  # read-only: a refusal here leaves nothing behind
            facts = self.flow.record("rescue.describe", self.describe(instance_id, helper_id))
            st.set_facts(facts)
        st.set_phase("rescuing")
        if facts["encrypted"]:
            note = encryption_note(facts["volume_id"], facts["kms_key_id"])
            st.add_note(note)
            self.calls.note(f"note: {note}")
        self.flow.step("rescue.stop", lambda: self._stop(facts["instance_id"], force_stop))
        if snapshot:
            snap = self.flow.step("rescue.snapshot", lambda: self._snapshot(facts["volume_id"]))
            if snap:
                st.add_artifact("snapshot_id", snap["snapshot_id"])
        self.flow.step("rescue.detach", lambda: self._detach_from(facts["volume_id"], facts["instance_id"],
                                                                  other_ok=facts["helper_id"]))
        attached = self.flow.step("rescue.attach-helper", lambda: self._attach_helper(facts))
        st.set_facts({"helper_device": attached["device"]})
        st.set_phase("rescued")
        result = {"phase": "rescued", "volume_id": facts["volume_id"], "helper_id": facts["helper_id"],
                  "helper_device": attached["device"], "snapshot_id": st.doc["artifacts"].get("snapshot_id")}
        if run:
            if locate is None:
                raise Refused("--run needs the attached disk located on this machine")
            outcome = self.flow.step("rescue.run", lambda: run_command(expand_command(run, locate(st.doc)), runner))
            result["run"] = outcome
        return result

    def _stop(self, instance_id: str, force: bool) -> dict:
        name = self._instance(instance_id).get("State", {}).get("Name")
        if name == "stopped":
            return {"was": name}
        if name in ("pending", "running"):
            params = {"InstanceIds": [instance_id]}
            if force:
                params["Force"] = True
            self._change("stop_instances", **params)
        elif name != "stopping":
            raise Refused("cannot stop the instance in this state", path=instance_id, found=name)
        self._wait("instance_stopped", InstanceIds=[instance_id])
        return {"was": name}

    def _snapshot(self, volume_id: str) -> dict:
        found = self._api("describe_snapshots", OwnerIds=["self"], Filters=[
            {"Name": f"tag:{TAG_KEY}", "Values": [self.state.run_id]},
            {"Name": "volume-id", "Values": [volume_id]},
        ]).get("Snapshots", [])
        if found:
            return {"snapshot_id": found[0]["SnapshotId"], "created": False}
        resp = self._change(
            "create_snapshot", fake={"SnapshotId": "snap-(dry-run)"},
            VolumeId=volume_id,
            Description=f"offline-fix backup of {volume_id} before rescue {self.state.run_id}",
            TagSpecifications=[{"ResourceType": "snapshot", "Tags": [
                {"Key": TAG_KEY, "Value": self.state.run_id}, {"Key": "Name", "Value": f"offline-fix {volume_id}"}]}],
        )
        return {"snapshot_id": resp["SnapshotId"], "created": True}

    def _detach_from(self, volume_id: str, instance_id: str, other_ok: str | None = None) -> dict:
        att = self._attachment(self._volume(volume_id))
        if att is None:
            return {"detached": False, "was": None}
        if att["InstanceId"] != instance_id:
            if att["InstanceId"] == other_ok:
                return {"detached": False, "was": att["InstanceId"]}
            raise Refused("the volume is attached to an unexpected instance", path=volume_id,
                          expected=instance_id, found=att["InstanceId"])
        self._change("detach_volume", VolumeId=volume_id, InstanceId=instance_id, Device=att["Device"])
        self._wait("volume_available", VolumeIds=[volume_id])
        return {"detached": True, "was": instance_id, "device": att["Device"]}

    def _attach(self, volume_id: str, instance_id: str, device: str) -> None:
        self._change("attach_volume", VolumeId=volume_id, InstanceId=instance_id, Device=device)
        self._wait("volume_in_use", VolumeIds=[volume_id])

    def _attach_helper(self, facts: dict) -> dict:
        volume_id, helper_id = facts["volume_id"], facts["helper_id"]
        att = self._attachment(self._volume(volume_id))
        if att is not None:
            if att["InstanceId"] == helper_id:
                return {"device": att["Device"], "attached": False}
            if not self.calls.dry_run:
                raise Refused("the volume is still attached elsewhere", path=volume_id,
                              expected=None, found=att["InstanceId"])
        device = free_device(self._instance(helper_id))
        self._attach(volume_id, helper_id, device)
        return {"device": device, "attached": True}

    # -- restore --------------------------------------------------------------------------------------
    def restore(self, *, settle: float = 0) -> dict:
        st = self.state
        self.flow.require_phase(("rescued", "restoring"), "restore")
        facts = st.facts
        st.set_phase("restoring")
        self.flow.step("restore.detach-helper", lambda: self._detach_from(
            facts["volume_id"], facts["helper_id"], other_ok=facts["instance_id"]))
        self.flow.step("restore.attach-root", lambda: self._attach_root(facts))
        self.flow.step("restore.delete-on-termination", lambda: self._delete_on_termination(facts))
        self.flow.step("restore.start", lambda: self._start(facts["instance_id"]))
        if settle and not self.calls.dry_run:
            self.calls.note(f"waiting {settle:g} s for Windows to boot before taking the screenshot")
            self.sleep(settle)
        evidence = self.flow.step("restore.evidence", lambda: self.evidence())
        st.set_phase("restored")
        return {"phase": "restored", "instance_id": facts["instance_id"], "root_device": facts["root_device"],
                "volume_id": facts["volume_id"], "evidence": evidence}

    def _attach_root(self, facts: dict) -> dict:
        volume_id, instance_id, root = facts["volume_id"], facts["instance_id"], facts["root_device"]
        att = self._attachment(self._volume(volume_id))
        if att is not None and not self.calls.dry_run:
            if att["InstanceId"] == instance_id and att["Device"] == root:
                return {"attached": False}
            raise Refused("the volume is attached somewhere else than the root device", path=volume_id,
                          expected=f"{instance_id} {root}", found=f"{att['InstanceId']} {att['Device']}")
        inst = self._instance(instance_id)
        other = next((m for m in inst.get("BlockDeviceMappings", []) if m.get("DeviceName") == root), None)
        if other is not None and other.get("Ebs", {}).get("VolumeId") != volume_id:
            raise Refused("another volume now sits at the root device of the instance", path=instance_id,
                          field=root, expected=volume_id, found=other.get("Ebs", {}).get("VolumeId"))
        self._attach(volume_id, instance_id, root)
        return {"attached": True}

    def _delete_on_termination(self, facts: dict) -> dict:
        # AttachVolume always sets DeleteOnTermination=false; put back what the instance had.
        if not facts.get("delete_on_termination"):
            return {"changed": False}
        self._change("modify_instance_attribute", InstanceId=facts["instance_id"], BlockDeviceMappings=[
            {"DeviceName": facts["root_device"], "Ebs": {"DeleteOnTermination": True}}])
        return {"changed": True}

    def _start(self, instance_id: str) -> dict:
        name = self._instance(instance_id).get("State", {}).get("Name")
        if name not in ("pending", "running"):
            self._change("start_instances", InstanceIds=[instance_id])
        self._wait("instance_running", InstanceIds=[instance_id])
        return {"was": name}

    def evidence(self) -> dict:
        """Save the console output and a console screenshot next to the state file."""
        if self.calls.dry_run:
            self.calls.planned.append("ec2.get_console_output / ec2.get_console_screenshot (saved next to the state)")
            return {}
        iid = self.state.facts["instance_id"]
        out: dict = {}
        for op, params, key, suffix in (
            ("get_console_output", {"InstanceId": iid, "Latest": True}, "Output", "console.txt"),
            ("get_console_screenshot", {"InstanceId": iid, "WakeUp": True}, "ImageData", "screenshot.jpg"),
        ):
            try:
                resp = self._api(op, **params)
            except (CloudApiError, PermissionDenied, NotFound) as exc:
                out[suffix] = {"saved": None, "why": str(exc)}
                self.state.add_note(f"{op} not available: {exc}")
                continue
            data = resp.get(key)
            if not data:
                out[suffix] = {"saved": None, "why": "empty (the instance may still be booting)"}
                continue
            try:
                raw = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                raw = data.encode("utf-8", "replace")
            out[suffix] = {"saved": write_artifact(self.state.path, suffix, raw), "bytes": len(raw)}
            self.state.add_artifact(suffix, out[suffix]["saved"])
        return out

    # -- abort ----------------------------------------------------------------------------------------
    def abort(self) -> dict:
        """Put the original volume back at the root device, whatever was done; restart the instance
        if it was running before the rescue. Idempotent; the backup snapshot is kept."""
        st = self.state
        facts = st.facts
        if not facts.get("volume_id"):
            st.set_phase("aborted")
            return {"phase": "aborted", "changed": False, "why": "nothing had been changed yet"}
        st.set_phase("aborting")
        self.flow.step("abort.detach-helper", lambda: self._detach_from(
            facts["volume_id"], facts["helper_id"], other_ok=facts["instance_id"]))
        self.flow.step("abort.attach-root", lambda: self._attach_root(facts))
        self.flow.step("abort.delete-on-termination", lambda: self._delete_on_termination(facts))
        if facts.get("original_state") in ("pending", "running"):
            self.flow.step("abort.start", lambda: self._start(facts["instance_id"]))
        st.set_phase("aborted")
        return {"phase": "aborted", "instance_id": facts["instance_id"], "volume_id": facts["volume_id"],
                "root_device": facts["root_device"], "snapshot_id": st.doc["artifacts"].get("snapshot_id")}

    # -- status ---------------------------------------------------------------------------------------
    def live(self) -> dict:
        """Where the volume and the instances stand now, read from the API."""
        facts = self.state.facts
        if not facts.get("volume_id"):
            return {}
        vol = self._volume(facts["volume_id"])
        att = self._attachment(vol)
        live = {
            "volume_state": vol.get("State"),
            "attached_to": att and att["InstanceId"],
            "attached_as": att and att["Device"],
            "instance_state": self._instance(facts["instance_id"]).get("State", {}).get("Name"),
        }
        snap_id = self.state.doc["artifacts"].get("snapshot_id")
        if snap_id:
            snaps = self._api("describe_snapshots", SnapshotIds=[snap_id]).get("Snapshots", [])
            if snaps:
                live["snapshot_state"] = snaps[0].get("State")
                live["snapshot_progress"] = snaps[0].get("Progress")
        return live
