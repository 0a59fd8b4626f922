"""``offline-fix diagnose`` end to end on built disks holding real event logs from ../shared/realdata
and kernel dump headers built from ntiodump.h's layout (tests/test_evidence_dumps.py). Oracles: the
counts MANIFEST.md records for each real log (established with other tools), evtx-rs's own
expectation for its damaged sample (270 records, 2 bad chunks), the demo disk's story
(images/synth/services_2016.py CULPRIT), and the fix command actually accepted by the tool."""

from __future__ import annotations

import json
import shlex
from collections import Counter
from pathlib import Path

import pytest
from test_evidence_dumps import build64

from images import demo, specs
from images.spec import literal
from images.synth.services_2016 import CULPRIT
from images.synth.system import system_hive
from offline_fix.cli import main

PY_SYSTEM = "python-evtx/system.evtx"
RS_SYSTEM = "omerbenamram-evtx/system.evtx"
BAD_CHUNK = "omerbenamram-evtx/sample_with_a_bad_chunk_magic.evtx"
CI_2022 = ("dfir-artifact-museum/EventLogs_extracted/APTSimulatorVM_Server2022-20348/"
           "Microsoft-Windows-CodeIntegrity%4Operational.evtx")
SETUP_W11 = "dfir-artifact-museum/EventLogs_extracted/RathbunVM_Win11-22000/Setup.evtx"
CI_NAME = "Microsoft-Windows-CodeIntegrity%4Operational.evtx"
USB_BASE = 0xFFFFF80012340000


def run(capsys, *args) -> tuple[int, dict | str]:
    code = main(list(args))
    captured = capsys.readouterr()
    if "--json" in args and captured.out.strip():
        return code, json.loads(captured.out)
    return code, captured.out + captured.err


def disk(event_logs=None, **kw):
    """The demo's SYSTEM hive and driver files, plus the given evidence."""
    return specs.windows_disk("gpt", literal(system_hive()), files=demo.driver_files(), event_logs=event_logs,
                              size_mib=128, **kw)


@pytest.fixture(scope="module")
def demo_image(tmp_path_factory):
    return demo.build_demo(tmp_path_factory.mktemp("demo"), log=lambda _m: None)


@pytest.fixture(scope="module")
def crash_disk(image_cache, realdata):
    """python-evtx's System log (BugCheck 1001, two 41s, two 6008s), the Server 2022 CodeIntegrity log
    (14 x 3010), a Windows 11 Setup log, a full-kernel MEMORY.DMP (0x7B), a small dump whose faulting
    address is in acmeusb.sys, and plaso's user-mode minidump saved as Minidump\\x.dmp."""
    small = build64(0x7E, (0xC0000005, USB_BASE + 0x1234, 0, 0), dump_type=4, modules=[
        ("\\SystemRoot\\system32\\ntoskrnl.exe", 0xFFFFF80000000000, 0xA00000),
        ("\\SystemRoot\\System32\\drivers\\acmeusb.sys", USB_BASE, 0x20000)])
    spec = disk({"System.evtx": realdata(PY_SYSTEM), CI_NAME: realdata(CI_2022), "Setup.evtx": realdata(SETUP_W11)},
                minidumps={"x.dmp": realdata("plaso/WER1090.tmp.mdmp.xz"), "Mini030524-01.dmp": literal(small)},
                memory_dmp=literal(build64(0x7B, (1, 2, 3, 4), dump_type=2)))
    return str(image_cache(spec, "raw").path)


def test_demo_culprit_ranks_first(demo_image, capsys, state_dir, tmp_path):
    report = tmp_path / "report.html"
    code, doc = run(capsys, "diagnose", str(demo_image), "--json", "--report", str(report))
    assert code == 1
    first = doc["suspects"][0]
    assert (first["name"], first["kind"], first["rank"]) == (CULPRIT.name, "driver", 1)
    assert first["evidence"][0]["kind"] == "crash-dump"
    assert first["fix"] == [f"offline-fix drivers disable {shlex.quote(str(demo_image))} {CULPRIT.name}"]
    assert doc["crashes"][0]["module"] == "acmedisk.sys"
    assert 'id="suspects"' in report.read_text()
    # the fix command is one the tool accepts (dry run: nothing written)
    argv = shlex.split(first["fix"][0])[1:] + ["--dry-run"]
    assert main(argv) == 0
    capsys.readouterr()


def test_demo_terminal_summary(demo_image, capsys, state_dir):
    code, text = run(capsys, "diagnose", str(demo_image))
    assert code == 1
    assert f"1. {CULPRIT.name} (driver" in text and "most likely: acmedisk" in text
    assert "Traceback" not in text


@pytest.mark.realdata
def test_real_system_log_crashes_and_dumps(crash_disk, capsys, state_dir):
    code, doc = run(capsys, "diagnose", crash_disk, "--json", "--no-verify")
    assert code == 1
    events = doc["evidence"]["event_logs"]["events"]
    ids = Counter(e["event_id"] for e in events if e["source"].endswith("System.evtx"))
    assert (ids[1001], ids[41], ids[6008]) == (1, 2, 2)  # MANIFEST.md
    labels = Counter(c["label"] for c in doc["crashes"])
    # BugCheck 1001 "0x00010001", one 41 with BugcheckCode 65537, and the two dumps built here
    assert labels == {"0x00010001 UNKNOWN_BUGCHECK": 2, "0x0000007B INACCESSIBLE_BOOT_DEVICE": 1,
                      "0x0000007E SYSTEM_THREAD_EXCEPTION_NOT_HANDLED": 1}
    kinds = {Path(d["path"].replace("\\", "/")).name: d["kind"] for d in doc["evidence"]["dumps"]["dumps"]}
    assert kinds == {"MEMORY.DMP": "kernel", "Mini030524-01.dmp": "kernel", "x.dmp": "user-mode"}
    by_name = {s["name"]: s for s in doc["suspects"]}
    # the small dump's faulting module; and the all-zero system-start minifilter, whose third-party
    # points are doubled by the 0x7B boot failure (35 + 2 x 10 > 50)
    assert [s["name"] for s in doc["suspects"][:2]] == ["acmemon", "acmeusb"]
    assert [e["kind"] for e in by_name["acmeusb"]["evidence"]] == ["crash-dump"]
    catalogs = next(s for s in doc["suspects"] if s["kind"] == "catalogs")
    assert sum(1 for e in catalogs["evidence"] if e["kind"] == "catalog-failure") == 14  # MANIFEST: 14 x 3010
    assert catalogs["fix"] == []  # servicing\Packages is empty: nothing to restore from
    setup = [e for e in events if e["source"].endswith("Setup.evtx")]
    assert len(setup) == 21 and {e["kind"] for e in setup} == {"update"}  # MANIFEST: 21 Servicing records
    assert doc["timeline"]["counts"]["shutdown"] >= 2
    assert any("WinDbg" in note for note in doc["cannot_tell"])  # the kernel dump holds no module list


@pytest.mark.realdata
def test_real_driver_failures_name_services(image_cache, realdata, capsys, state_dir):
    path = str(image_cache(disk({"System.evtx": realdata(RS_SYSTEM)}), "folder").path)
    code, doc = run(capsys, "diagnose", path, "--json", "--no-verify")
    assert code == 1
    by_name = {s["name"]: s for s in doc["suspects"]}
    # MANIFEST / evtx tests: 7000 x3 CldFlt, 7026 x3 (CSC, dam), 219 x3 WudfRd
    for name in ("CSC", "dam", "WUDFRd", "CldFlt"):
        assert any(e["kind"] == "load-failure" for e in by_name[name]["evidence"]), name
    assert by_name["WUDFRd"]["fix"] == [f"offline-fix drivers disable {shlex.quote(path)} WUDFRd"]
    assert by_name["CldFlt"]["fix"] == []  # no such service in this hive


@pytest.mark.realdata
def test_damaged_log_gives_records_and_a_warning(image_cache, realdata, capsys, state_dir):
    path = str(image_cache(disk({"System.evtx": realdata(BAD_CHUNK)}), "folder").path)
    code, doc = run(capsys, "diagnose", path, "--json", "--no-verify")
    assert code in (0, 1)
    (log,) = doc["evidence"]["event_logs"]["logs"]
    assert (log["records"], log["errors"]) == (270, 2)  # evtx-rs tests/test_full_samples.rs
    codes = [f["code"] for f in doc["findings"]]
    assert codes.count("evtx-bad-chunk") == 2 and "evtx-damaged" in codes
    code, text = run(capsys, "diagnose", path, "--no-verify")
    assert "warning:" in text and "Traceback" not in text


def test_bad_input_is_one_line(capsys, tmp_path, demo_image, state_dir):
    code, text = run(capsys, "diagnose", str(tmp_path / "nope.vhdx"))
    assert code == 3 and text.count("\n") == 1 and "Traceback" not in text
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"\x00" * 1024 * 1024)
    code, text = run(capsys, "diagnose", str(junk))
    assert code in (3, 5, 6) and "Traceback" not in text
    code, text = run(capsys, "diagnose", str(demo_image), "--report", str(tmp_path / "no" / "such" / "r.html"))
    assert code == 3 and "Traceback" not in text
