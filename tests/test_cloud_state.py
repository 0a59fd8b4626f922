"""The resumable state file: mode 0600, atomic, no secrets, strict loading, step records, lock."""

from __future__ import annotations

import json
import os
import stat

import pytest

from offline_fix.cloud.state import State, StateError, StateLock, check_no_secrets
from offline_fix.cloud.workflow import Calls, Workflow, expand_command
from offline_fix.errors import NotFound, Refused


def test_saved_file_is_private_and_round_trips(tmp_path):
    os.umask(0o022)
    path = tmp_path / "s.json"
    st = State.new("aws", {"instance": "i-1"}, path)
    st.set_facts({"volume_id": "vol-1", "kms_key_id": "arn:aws:kms:us-east-1:1:key/x"})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = State.load(path)
    assert again.facts["volume_id"] == "vol-1" and again.provider == "aws"
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]  # no temp file left behind


@pytest.mark.parametrize("doc", [
    {"facts": {"client_secret": "x"}},
    {"facts": {"AccessToken": "x"}},
    {"notes": ["https://x.blob.core.windows.net/b?sv=1&sig=abc"]},
    {"facts": {"who": "AKIAIOSFODNN7EXAMPLE"}},
])
def test_secrets_are_refused(doc):
    with pytest.raises(Refused):
        check_no_secrets(doc)


def test_secret_never_reaches_the_disk(tmp_path):
    path = tmp_path / "s.json"
    st = State.new("azure", {}, path)
    st.save()
    with pytest.raises(Refused):
        st.set_facts({"password": "hunter2"})
    assert "hunter2" not in path.read_text()


@pytest.mark.parametrize("text, field", [
    ("[]", None),
    ('{"format": "other"}', "format"),
    ('{"format": "offline-fix-cloud-state", "version": 99}', "version"),
])
def test_bad_files_are_typed_errors(tmp_path, text, field):
    path = tmp_path / "s.json"
    path.write_text(text)
    with pytest.raises(StateError) as info:
        State.load(path)
    assert info.value.field == field
    with pytest.raises(NotFound):
        State.load(tmp_path / "missing.json")


def test_malformed_step_is_refused(tmp_path):
    st = State.new("aws", {}, tmp_path / "s.json")
    st.save()
    doc = json.loads((tmp_path / "s.json").read_text())
    doc["steps"] = [{"name": "x", "status": "bogus"}]
    (tmp_path / "s.json").write_text(json.dumps(doc))
    with pytest.raises(StateError, match="malformed step"):
        State.load(tmp_path / "s.json")


def test_steps_are_recorded_before_and_after(tmp_path):
    path = tmp_path / "s.json"
    st = State.new("aws", {}, path)
    seen = []

    def work():
        seen.append(State.load(path).step("one")["status"])  # what a crash here would leave
        return {"ok": 1}

    flow = Workflow(st, Calls(echo=lambda line: None))
    assert flow.step("one", work) == {"ok": 1}
    assert seen == ["started"]
    assert State.load(path).step("one")["status"] == "done"
    assert flow.step("one", lambda: pytest.fail("a done step must not run again")) == {"ok": 1}


def test_lock_refuses_a_second_run(tmp_path):
    path = tmp_path / "s.json"
    with StateLock(path):
        with pytest.raises(Refused, match="another offline-fix run"):
            with StateLock(path):
                pass
    with StateLock(path):
        pass


def test_expand_command():
    assert expand_command("tool --on {disk} -x", "/dev/sdf") == ["tool", "--on", "/dev/sdf", "-x"]
    assert expand_command("tool -x", "/dev/sdf") == ["tool", "-x", "/dev/sdf"]
    with pytest.raises(Refused):
        expand_command("tool 'unclosed", "/dev/sdf")
