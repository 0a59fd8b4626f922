"""AWS adapter against moto in server mode on 127.0.0.1 (real HTTP through AWS_ENDPOINT_URL).

The moto server starts once for the module, before any boto3 client exists; each test resets it.
Oracles are moto's own view of the world (describe_volumes / describe_instances), not our state file.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
import urllib.request

import pytest

from offline_fix.cli import main
from offline_fix.cloud.aws import AwsAdapter, device_letter, free_device
from offline_fix.cloud.state import State
from offline_fix.cloud.workflow import Calls, Interrupted, stop_after

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example credentials
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto_url():
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("moto server did not start")
            time.sleep(0.1)
    env = {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           "AWS_DEFAULT_REGION": "us-east-1"}
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("AWS_PROFILE", raising=False)
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        for key, value in env.items():
            mp.setenv(key, value)
        yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def ec2(moto_url):
    import boto3

    req = urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")
    urllib.request.urlopen(req, timeout=10).close()
    return boto3.client("ec2", region_name="us-east-1")


def make_world(ec2, helper_zone="us-east-1a", encrypted=False):
    """A running broken Windows instance (root EBS volume at /dev/sda1) and a running Linux helper."""
    images = ec2.describe_images()["Images"]
    windows = next(i["ImageId"] for i in images if i.get("Platform") == "windows")
    linux = next(i["ImageId"] for i in images if not i.get("Platform"))
    ebs = {"VolumeSize": 30, "DeleteOnTermination": True}
    if encrypted:
        ebs.update(Encrypted=True, KmsKeyId=KMS_KEY)
    broken = ec2.run_instances(ImageId=windows, MinCount=1, MaxCount=1, Placement={"AvailabilityZone": "us-east-1a"},
                               BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": ebs}])["Instances"][0]
    helper = ec2.run_instances(ImageId=linux, MinCount=1, MaxCount=1,
                               Placement={"AvailabilityZone": helper_zone})["Instances"][0]
    vol = broken["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    return broken["InstanceId"], helper["InstanceId"], vol


def attachment(ec2, vol):
    atts = ec2.describe_volumes(VolumeIds=[vol])["Volumes"][0]["Attachments"]
    return (atts[0]["InstanceId"], atts[0]["Device"]) if atts else None


def snapshots_of(ec2, vol):
    snaps = ec2.describe_snapshots(Filters=[{"Name": "volume-id", "Values": [vol]}])["Snapshots"]
    return [s["SnapshotId"] for s in snaps]


def instance_state(ec2, iid):
    return ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"]


def adapter(ec2, state, hook=None):
    return AwsAdapter(ec2, state, calls=Calls(), hook=hook, wait_delay=0.1, wait_attempts=50)


# -- whole rescue and restore through the CLI ---------------------------------------------------------
def test_rescue_then_restore(ec2, tmp_path, capsys):
    broken, helper, vol = make_world(ec2)
    sf = tmp_path / "r.json"
    assert main(["cloud", "aws", "rescue", "--instance", broken, "--helper", helper, "--state", str(sf),
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    # moto's view: the root volume sits on the helper at a free device, the instance is stopped.
    assert attachment(ec2, vol) == (helper, "/dev/sdf")
    assert doc["helper_device"] == "/dev/sdf"
    assert instance_state(ec2, broken) == "stopped"
    assert snapshots_of(ec2, vol) == [doc["snapshot_id"]]
    # state file: 0600, no secrets from the environment
    assert stat.S_IMODE(os.stat(sf).st_mode) == 0o600
    text = sf.read_text()
    assert ACCESS_KEY not in text and SECRET_KEY not in text

    assert main(["cloud", "aws", "status", "--state", str(sf), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["phase"] == "rescued"
    assert status["live"]["attached_to"] == helper

    assert main(["cloud", "aws", "restore", "--state", str(sf), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert attachment(ec2, vol) == (broken, "/dev/sda1")
    assert instance_state(ec2, broken) == "running"
    root = ec2.describe_instances(InstanceIds=[broken])["Reservations"][0]["Instances"][0]["BlockDeviceMappings"]
    assert [(m["DeviceName"], m["Ebs"]["VolumeId"], m["Ebs"]["DeleteOnTermination"]) for m in root] == [
        ("/dev/sda1", vol, True)]
    # the console output was saved next to the state file; moto has no screenshot API, which is noted
    console = doc["evidence"]["console.txt"]["saved"]
    assert console and "Linux version" in open(console, encoding="utf-8").read()
    assert doc["evidence"]["screenshot.jpg"]["saved"] is None
    assert State.load(sf).phase == "restored"


def test_dry_run_changes_nothing(ec2, tmp_path, capsys):
    broken, helper, vol = make_world(ec2)
    sf = tmp_path / "r.json"
    assert main(["cloud", "aws", "rescue", "--instance", broken, "--helper", helper, "--state", str(sf),
                 "--dry-run"]) == 0
    printed = capsys.readouterr().out
    for call in ("ec2.stop_instances(InstanceIds=", "ec2.create_snapshot(VolumeId=", "ec2.detach_volume(",
                 f"ec2.attach_volume(VolumeId='{vol}', InstanceId='{helper}', Device='/dev/sdf')"):
        assert call in printed
    assert not sf.exists()
    assert attachment(ec2, vol) == (broken, "/dev/sda1")
    assert instance_state(ec2, broken) == "running"
    assert snapshots_of(ec2, vol) == []


def test_other_zone_is_refused(ec2, tmp_path, capsys):
    broken, helper, vol = make_world(ec2, helper_zone="us-east-1b")
    sf = tmp_path / "r.json"
    assert main(["cloud", "aws", "rescue", "--instance", broken, "--helper", helper, "--state", str(sf)]) == 7
    err = capsys.readouterr().err
    assert "us-east-1a" in err and "us-east-1b" in err and "Availability Zone" in err
    assert "Traceback" not in err
    assert not sf.exists()  # refused before any change, nothing to resume
    assert instance_state(ec2, broken) == "running"
    assert attachment(ec2, vol) == (broken, "/dev/sda1")


def test_encrypted_volume_is_named_with_its_key(ec2, tmp_path, capsys):
    broken, helper, vol = make_world(ec2, encrypted=True)
    sf = tmp_path / "r.json"
    assert main(["cloud", "aws", "rescue", "--instance", broken, "--helper", helper, "--state", str(sf),
                 "--json"]) == 0
    notes = json.loads(capsys.readouterr().out)["notes"]
    assert any(KMS_KEY in n and vol in n and "kms:CreateGrant" in n for n in notes)
    assert attachment(ec2, vol) == (helper, "/dev/sdf")


def test_existing_state_needs_resume(ec2, tmp_path, capsys):
    broken, helper, _ = make_world(ec2)
    sf = tmp_path / "r.json"
    args = ["cloud", "aws", "rescue", "--instance", broken, "--helper", helper, "--state", str(sf)]
    assert main(args) == 0
    assert main(args) == 7
    assert "--resume" in capsys.readouterr().err


# -- crashes: resume and abort --------------------------------------------------------------------
def test_crash_then_resume(ec2, tmp_path, capsys):
    broken, helper, vol = make_world(ec2)
    sf = tmp_path / "r.json"
    state = State.new("aws", {"instance": broken, "helper": helper}, sf)
    with pytest.raises(Interrupted):
        adapter(ec2, state, stop_after("rescue.snapshot")).rescue()
    assert instance_state(ec2, broken) == "stopped"
    assert attachment(ec2, vol) == (broken, "/dev/sda1")
    assert State.load(sf).phase == "rescuing"

    assert main(["cloud", "aws", "rescue", "--resume", "--state", str(sf)]) == 0
    assert attachment(ec2, vol) == (helper, "/dev/sdf")
    # the snapshot step was not repeated
    assert len(snapshots_of(ec2, vol)) == 1
    steps = {r["name"]: r for r in State.load(sf).doc["steps"]}
    assert steps["rescue.snapshot"]["attempts"] == 1


class AttachThenDie:
    """An EC2 client that dies right after AttachVolume went through, before the state is written."""

    def __init__(self, ec2):
        self._ec2 = ec2

    def __getattr__(self, name):
        return getattr(self._ec2, name)

    def attach_volume(self, **kw):
        self._ec2.attach_volume(**kw)
        raise Interrupted("after attach_volume")


def test_crash_inside_a_step_is_idempotent(ec2, tmp_path):
    broken, helper, vol = make_world(ec2)
    sf = tmp_path / "r.json"
    state = State.new("aws", {"instance": broken, "helper": helper}, sf)
    with pytest.raises(Interrupted):
        adapter(AttachThenDie(ec2), state).rescue()
    rec = State.load(sf).step("rescue.attach-helper")
    assert rec["status"] == "started"
    result = adapter(ec2, State.load(sf)).rescue()
    assert result["helper_device"] == "/dev/sdf"
    assert attachment(ec2, vol) == (helper, "/dev/sdf")


def test_abort_after_half_done_rescue(ec2, tmp_path, capsys):
    broken, helper, vol = make_world(ec2)
    sf = tmp_path / "r.json"
    assert main(["cloud", "aws", "rescue", "--instance", broken, "--helper", helper, "--state", str(sf),
                 "--stop-after", "rescue.detach"]) == 130
    assert "stopped after step rescue.detach" in capsys.readouterr().err
    assert attachment(ec2, vol) is None  # detached, not attached anywhere
    assert instance_state(ec2, broken) == "stopped"

    assert main(["cloud", "aws", "abort", "--state", str(sf), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["phase"] == "aborted"
    assert attachment(ec2, vol) == (broken, "/dev/sda1")
    assert instance_state(ec2, broken) == "running"
    # abort is idempotent: again is a no-op
    assert main(["cloud", "aws", "abort", "--state", str(sf)]) == 0
    assert attachment(ec2, vol) == (broken, "/dev/sda1")


def test_abort_after_full_rescue(ec2, tmp_path):
    broken, helper, vol = make_world(ec2)
    sf = tmp_path / "r.json"
    assert main(["cloud", "aws", "rescue", "--instance", broken, "--helper", helper, "--state", str(sf)]) == 0
    assert main(["cloud", "aws", "abort", "--state", str(sf)]) == 0
    assert attachment(ec2, vol) == (broken, "/dev/sda1")
    assert instance_state(ec2, broken) == "running"
    assert main(["cloud", "aws", "restore", "--state", str(sf)]) == 7  # aborted rescues stay aborted


def test_run_command_gets_the_located_device(ec2, tmp_path):
    broken, helper, vol = make_world(ec2)
    state = State.new("aws", {"instance": broken, "helper": helper}, tmp_path / "r.json")
    seen = []

    def runner(argv, check):
        seen.append(argv)
        return subprocess.CompletedProcess(argv, 0)

    result = adapter(ec2, state).rescue(run="offline-fix inspect {disk} --json",
                                        locate=lambda doc: f"/dev/disk/by-id/x-{doc['facts']['volume_id']}",
                                        runner=runner)
    assert seen[0][-3:] == ["inspect", f"/dev/disk/by-id/x-{vol}", "--json"]
    assert result["run"]["exit_code"] == 0


# -- pure helpers --------------------------------------------------------------------------------------
def test_free_device_skips_used_letters_whatever_the_prefix():
    helper = {"RootDeviceName": "/dev/xvda", "BlockDeviceMappings": [{"DeviceName": "/dev/xvdf"},
                                                                      {"DeviceName": "/dev/sdg"}]}
    assert free_device(helper) == "/dev/sdh"
    assert free_device({**helper, "Platform": "windows"}) == "xvdh"
    assert device_letter("/dev/sda1") == "a"


def test_bad_state_file_is_one_line(tmp_path, capsys):
    sf = tmp_path / "bad.json"
    sf.write_text("{not json")
    assert main(["cloud", "aws", "status", "--state", str(sf), "--offline"]) == 5
    err = capsys.readouterr().err
    assert "not JSON" in err and "Traceback" not in err
    assert main(["cloud", "aws", "status", "--state", str(tmp_path / "missing.json")]) == 3
