"""Event logs. Oracles: the counts and values MANIFEST.md records for each real log (established with
other tools), the EVTX header CRC Windows wrote, and evtx-rs's own expectation for its damaged sample
(tests/test_full_samples.rs: 270 records read, 2 chunk errors)."""

from __future__ import annotations

import json
import random
import shutil
import time
from collections import Counter
from datetime import datetime, timezone

import pytest

from offline_fix.errors import CorruptInput, NotFound
from offline_fix.evidence import eventlogs
from offline_fix.evidence.eventlogs import Event, EvtxError, LogResult, event_from_record, read_log, read_logs, read_logs_dir

PY_SYSTEM = "python-evtx/system.evtx"
RS_SYSTEM = "omerbenamram-evtx/system.evtx"
BAD_CHUNK = "omerbenamram-evtx/sample_with_a_bad_chunk_magic.evtx"
CI_2022 = "dfir-artifact-museum/EventLogs_extracted/APTSimulatorVM_Server2022-20348/Microsoft-Windows-CodeIntegrity%4Operational.evtx"
CI_W11 = "dfir-artifact-museum/EventLogs_extracted/RathbunVM_Win11-22000/Microsoft-Windows-CodeIntegrity%4Operational.evtx"
SETUP_W11 = "dfir-artifact-museum/EventLogs_extracted/RathbunVM_Win11-22000/Setup.evtx"

pytestmark = pytest.mark.realdata


def _ids(log: LogResult) -> Counter:
    return Counter(e.event_id for e in log.events)


def test_python_evtx_system_crash_evidence(realdata):
    start = time.perf_counter()
    log = read_log(realdata(PY_SYSTEM))
    elapsed = time.perf_counter() - start
    print(f"python-evtx system.evtx: {log.records} records in {elapsed * 1000:.1f} ms")
    assert (log.records, log.errors, log.channel) == (1601, 0, "System")
    ids = _ids(log)
    # MANIFEST.md: BugCheck 1001 "0x00010001 (0,0,0,0)", Kernel-Power 41 x2, EventLog 6008 x2, SCM 7045 x12
    assert (ids[1001], ids[41], ids[6008], ids[7045]) == (1, 2, 2, 12)
    (bugcheck,) = log.of_id(1001)
    assert bugcheck.kind == "crash" and bugcheck.bugcheck == 0x00010001
    assert bugcheck.parameters == (0, 0, 0, 0)
    assert bugcheck.path == "C:\\Windows\\MEMORY.DMP" and bugcheck.data["report_id"] == "040612-50390-01"
    assert sorted(e.bugcheck or 0 for e in log.of_id(41)) == [0, 0x10001]  # "one BugcheckCode 65537"
    assert Counter(e.kind for e in log.of_id(41)) == {"crash": 1, "shutdown": 1}
    assert all(e.kind == "shutdown" for e in log.of_id(6008))
    assert log.findings == []
    assert log.dirty is True  # MANIFEST: "file dirty flag set"


def test_6008_carries_the_lost_shutdown_time(realdata):
    log = read_log(realdata(PY_SYSTEM))
    first = log.of_id(6008)[0]
    # Windows' own message: "The previous system shutdown at 9:59:13 AM on 4/6/2012 was unexpected"
    # (local time; the machine ran on US Eastern daylight time, UTC-4). The binary holds it in UTC.
    assert first.data["shutdown_time"] == "2012-04-06T13:59:13.029000Z"
    assert first.time > datetime(2012, 4, 6, 13, 59, 13, tzinfo=timezone.utc)


def test_7045_fields(realdata):
    log = read_log(realdata(PY_SYSTEM))
    bcswap = next(e for e in log.of_id(7045) if e.names == ("BCSWAP",))
    assert bcswap.kind == "driver-change"
    assert bcswap.path == "C:\\Windows\\system32\\drivers\\BCSWAP.sys"
    assert bcswap.data["service_type"] == "kernel mode driver" and bcswap.data["start_type"] == "disabled"


def test_omerbenamram_system_driver_failures(realdata):
    log = read_log(realdata(RS_SYSTEM))
    assert (log.records, log.errors) == (1881, 0)  # MANIFEST: 1881 records
    ids = _ids(log)
    assert (ids[7000], ids[7026], ids[219], ids[7045]) == (3, 3, 3, 57)
    assert {e.names for e in log.of_id(7000)} == {("CldFlt",)}
    assert {e.status for e in log.of_id(7000)} == {50}  # %%50
    assert {n for e in log.of_id(7026) for n in e.names} == {"CSC", "dam"}
    assert {(e.names, e.status) for e in log.of_id(219)} == {(("WudfRd",), 0xC0000365)}
    assert all(e.kind == "driver-failure" for e in log.of_id(7000) + log.of_id(7026) + log.of_id(219))
    # Winlogon also logs event id 7001 in System (user logon): not a service failure
    assert ids[7001] == 0


def test_code_integrity_catalog_failures(realdata):
    log = read_log(realdata(CI_2022))
    assert log.channel == "Microsoft-Windows-CodeIntegrity/Operational"
    assert _ids(log) == {3010: 14}  # MANIFEST: 14 x 3010, status 0xC0000034 (3085 is not read)
    assert {e.status for e in log.events} == {0xC0000034}
    assert all(e.kind == "ci-failure" for e in log.events)
    names = {e.names[0] for e in log.events}
    assert "Microsoft-Windows-Server-Minimal-Drivers-merged-Package~31bf3856ad364e35~amd64~~10.0.20348.1.cat" in names
    assert "STATUS_OBJECT_NAME_NOT_FOUND" in log.events[0].summary


def test_code_integrity_log_without_failures(realdata):
    log = read_log(realdata(CI_W11))
    assert log.events == [] and log.records == 5  # 5 x 3084 (informational)
    assert log.channel == "Microsoft-Windows-CodeIntegrity/Operational"


def test_setup_updates(realdata):
    log = read_log(realdata(SETUP_W11))
    assert log.records == 21 and len(log.events) == 21  # MANIFEST: 21 Servicing records
    assert _ids(log) == {1: 9, 2: 7, 4: 2, 8: 1, 10: 1, 14: 1}
    kbs = {n for e in log.events for n in e.names}
    assert {"KB5007040", "KB5009566"} <= kbs
    installed = [e for e in log.of_id(2) if e.names == ("KB5007040",)]
    assert installed and installed[0].data["state"] == "Installed" and installed[0].status == 0
    assert all(e.kind == "update" for e in log.events)


def test_bad_chunk_magic_yields_records_and_warnings(realdata):
    log = read_log(realdata(BAD_CHUNK))
    # evtx-rs tests/test_full_samples.rs: 270 records, 2 errors for this sample. (MANIFEST.md says 14:
    # that is what a plain `for` loop gets, as it stops at the first bad chunk; we read past it.)
    assert (log.records, log.errors) == (270, 2)
    codes = [f.code for f in log.findings]
    assert codes.count("evtx-bad-chunk") == 2 and "evtx-damaged" in codes
    assert all(f.severity == "warning" for f in log.findings)
    assert log.channel == "Microsoft-Windows-AppXDeployment/Operational"


def test_truncated_copy(tmp_path, realdata):
    data = realdata(PY_SYSTEM).read_bytes()
    cut = tmp_path / "System.evtx"
    cut.write_bytes(data[:100_000])
    log = read_log(cut)
    assert 0 < log.records < 1601
    assert "evtx-truncated" in {f.code for f in log.findings}


def test_header_only(tmp_path, realdata):
    path = tmp_path / "System.evtx"
    path.write_bytes(realdata(PY_SYSTEM).read_bytes()[:4096])
    log = read_log(path)
    assert log.records == 0 and [f.code for f in log.findings] == ["evtx-truncated"]


def test_header_checksum_is_checked(tmp_path, realdata):
    data = bytearray(realdata(PY_SYSTEM).read_bytes())
    data[0x18] ^= 0xFF  # NextRecordIdentifier: covered by the header CRC32
    path = tmp_path / "System.evtx"
    path.write_bytes(bytes(data))
    log = read_log(path)
    assert "evtx-bad-header-checksum" in {f.code for f in log.findings}


@pytest.mark.parametrize("seed", range(12))
def test_random_damage_never_escapes(tmp_path, realdata, seed):
    data = bytearray(realdata(RS_SYSTEM).read_bytes())
    rng = random.Random(seed)
    for _ in range(rng.randint(1, 200)):
        data[rng.randrange(4096, len(data))] = rng.randrange(256)
    path = tmp_path / "System.evtx"
    path.write_bytes(bytes(data))
    log = read_log(path)  # must not raise
    assert log.records + log.errors > 0
    json.dumps(log.to_dict())


@pytest.mark.parametrize("content", [b"", b"ElfFile\0" + bytes(20), b"MZ" + bytes(5000), b"ElfFilX" + bytes(5000)])
def test_not_evtx_is_a_typed_error(tmp_path, content):
    path = tmp_path / "x.evtx"
    path.write_bytes(content)
    with pytest.raises(EvtxError) as info:
        read_log(path)
    assert isinstance(info.value, CorruptInput)


def test_minidump_is_not_evtx(realdata):
    with pytest.raises(EvtxError):
        read_log(realdata("plaso/WER1090.tmp.mdmp.xz"))


def test_missing_log(tmp_path):
    with pytest.raises(NotFound):
        read_log(tmp_path / "System.evtx")


def test_file_object(realdata):
    with open(realdata(RS_SYSTEM), "rb") as f:
        log = read_log(f, name="System.evtx")
    assert log.records == 1881 and log.path == "System.evtx"


def test_logs_dir_reads_only_the_channels_that_matter(tmp_path, realdata):
    logs = tmp_path / "Logs"
    logs.mkdir()
    shutil.copy(realdata(RS_SYSTEM), logs / "system.evtx")  # case differs from Windows' name
    shutil.copy(realdata(SETUP_W11), logs / "Setup.evtx")
    shutil.copy(realdata(BAD_CHUNK), logs / "Microsoft-Windows-AppXDeployment%4Operational.evtx")
    result = read_logs_dir(logs)
    assert sorted(log.channel for log in result.logs) == ["Setup", "System"]
    assert [f.code for f in result.findings] == ["evtx-missing"]  # no CodeIntegrity log
    events = result.events
    assert events == sorted(events, key=lambda e: e.time)
    assert len(events) == sum(len(log.events) for log in result.logs)
    doc = json.loads(json.dumps(result.to_dict()))
    assert len(doc["logs"]) == 2


def test_read_logs_turns_bad_files_into_findings(tmp_path, realdata):
    bad = tmp_path / "bad.evtx"
    bad.write_bytes(b"nonsense" * 100)
    result = read_logs([realdata(CI_2022), bad])
    assert len(result.logs) == 1 and [f.code for f in result.findings] == ["evtx-unreadable"]


def test_timeline_entries_and_json(realdata):
    log = read_log(realdata(PY_SYSTEM))
    entries = log.timeline_entries()
    assert len(entries) == len(log.events)
    crash = [e for e in entries if e.kind == "crash"]
    assert crash[0].time == datetime(2012, 4, 6, 14, 7, 6, 625000, tzinfo=timezone.utc)  # Kernel-Power 41
    doc = json.loads(json.dumps(log.to_dict()))
    assert doc["events"][0]["time"].endswith("Z")


# -- events no public log contains: synthetic records in the shape evtx-rs produces -----------


def _record(provider, event_id, channel, event_data=None, user_data=None, qualifiers=None, activity=None, record_id=7):
    system = {
        "Provider": {"#attributes": {"Name": provider}},
        "EventID": {"#attributes": {"Qualifiers": qualifiers}, "#text": event_id} if qualifiers else event_id,
        "TimeCreated": {"#attributes": {"SystemTime": "2023-11-06T02:03:39.834684Z"}},
        "EventRecordID": record_id,
        "Correlation": {"#attributes": {"ActivityID": activity}} if activity else None,
        "Channel": channel,
    }
    event = {"System": system}
    if event_data is not None:
        event["EventData"] = event_data
    if user_data is not None:
        event["UserData"] = user_data
    data = json.dumps({"Event": event}, separators=(",", ":"))
    return {"event_record_id": record_id, "timestamp": "2023-11-06T02:03:39.834684Z UTC", "data": data}


CI = "Microsoft-Windows-CodeIntegrity"
CI_CHANNEL = "Microsoft-Windows-CodeIntegrity/Operational"


def test_ci_3004_file_hash_not_found():
    # Field names as in the CodeIntegrity manifest: FileNameBuffer, ProcessNameBuffer
    rec = _record(CI, 3004, CI_CHANNEL, {
        "FileNameLength": 60, "FileNameBuffer": "\\Device\\HarddiskVolume2\\Windows\\System32\\drivers\\filecrypt.sys",
        "ProcessNameLength": 6, "ProcessNameBuffer": "System", "RequestedSigningLevel": 12})
    event = event_from_record(rec, "ci.evtx")
    assert event.kind == "ci-failure" and event.names == ("filecrypt.sys",)
    assert event.path.endswith("filecrypt.sys") and "file hash" in event.summary
    assert event.source == "ci.evtx"


def test_ci_3077_with_spaced_field_names():
    # 3076/3077 use names with spaces ("File Name", "Process Name") in their manifest
    rec = _record(CI, 3077, CI_CHANNEL, {
        "FileNameLength": 40, "File Name": "\\Device\\HarddiskVolume3\\Windows\\System32\\drivers\\HASPNT.sys",
        "ProcessNameLength": 6, "Process Name": "System", "Requested Signing Level": 12,
        "Validated Signing Level": 1, "Status": "0xc0000428", "PolicyName": "Default"})
    event = event_from_record(rec)
    assert event.names == ("HASPNT.sys",) and event.status == 0xC0000428
    assert "STATUS_INVALID_IMAGE_HASH" in event.summary and "System" in event.summary


@pytest.mark.parametrize("event_id", [3001, 3002, 3033])
def test_other_ci_events(event_id):
    rec = _record(CI, event_id, CI_CHANNEL, {"FileNameBuffer": "\\Device\\X\\drv.sys", "ProcessNameBuffer": "p.exe", "Status": 3221226536})
    event = event_from_record(rec)
    assert event.kind == "ci-failure" and event.names == ("drv.sys",)


def test_3089_folds_into_its_event(tmp_path):
    failing = event_from_record(_record(CI, 3033, CI_CHANNEL, {"FileNameBuffer": "a.sys", "Status": "0xc0000428"}, activity="A-1"))
    details = event_from_record(_record(CI, 3089, CI_CHANNEL, {"PublisherName": "Contoso", "IssuerName": "CA"}, activity="A-1"))
    orphan = event_from_record(_record(CI, 3089, CI_CHANNEL, {"PublisherName": "Other"}, activity="B-2"))
    log = LogResult(path="ci.evtx", events=[failing, details, orphan])
    eventlogs._fold_signatures(log)
    assert log.events == [failing, orphan]
    assert failing.data["signatures"][0]["publisher"] == "Contoso"


def test_1001_in_classic_text_form():
    # Older systems put the whole sentence in unnamed Data strings
    rec = _record("Save Dump", 1001, "System", {"Data": {"#text": [
        "The computer has rebooted from a bugcheck.  The bugcheck was: 0x1000007e (0xc0000005, 0xf7a10123, 0xf78d2c44, 0xf78d2940). "
        "A dump was saved in: C:\\WINDOWS\\Minidump\\Mini040612-01.dmp.", ""]}}, qualifiers=16384)
    event = event_from_record(rec)
    assert event.bugcheck == 0x1000007E and event.parameters[1] == 0xF7A10123
    assert "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED_M" in event.summary


def test_scm_7001_and_unnamed_params():
    rec = _record("Service Control Manager", 7001, "System", {"param1": "LanmanServer", "param2": "srv2", "param3": "%%1275"}, qualifiers=49152)
    event = event_from_record(rec)
    assert event.names == ("LanmanServer", "srv2") and event.status == 1275
    assert "ERROR_DRIVER_BLOCKED" in event.summary


def test_unwanted_and_malformed_records():
    assert event_from_record(_record("Service Control Manager", 7036, "System", {"param1": "x"})) is None
    assert event_from_record(_record("Microsoft-Windows-Winlogon", 7001, "System", {"TSId": 1})) is None
    broken = {"event_record_id": 9, "timestamp": "", "data": '{"Event":{"System":{"EventID":41}}}'}
    with pytest.raises(EvtxError):
        event_from_record(broken)


def test_event_to_dict_is_json():
    event = event_from_record(_record("Microsoft-Windows-Kernel-Power", 41, "System",
                                      {"BugcheckCode": 126, "BugcheckParameter1": "0xffffffffc0000005",
                                       "BugcheckParameter2": "0xfffff80012341a2b", "BugcheckParameter3": "0x0",
                                       "BugcheckParameter4": "0x0", "SleepInProgress": False}))
    doc = json.loads(json.dumps(event.to_dict()))
    assert doc["bugcheck"]["name"] == "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED"
    assert doc["parameters"][1] == "0xfffff80012341a2b"
    assert isinstance(event, Event) and event.kind == "crash"
