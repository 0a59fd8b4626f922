"""``offline-fix crashdump enable``: from diagnose's "crash dumps disabled" to a hive that writes a
kernel dump, and back. Oracles: python-registry reading the written hive file, and sha256 after undo."""

from __future__ import annotations

import hashlib
import io
import json
import shlex

import pytest
from Registry import Registry

from images import demo, specs
from images.spec import literal
from images.synth.system import system_hive
from offline_fix.cli import main
from offline_fix.hive import Hive
from offline_fix.hive.structures import REG_DWORD
from offline_fix.hive.writer import HiveWriter

SETS = ("ControlSet001", "ControlSet002")


def dumps_off() -> bytes:
    hive = Hive.open(system_hive(), writable=True)
    w = HiveWriter(hive)
    for cs in SETS:
        w.set_value(f"{cs}\\Control\\CrashControl", "CrashDumpEnabled", REG_DWORD, 0)
    w.commit()
    return bytes(hive.buf)


@pytest.fixture
def folder(image_cache, tmp_path):
    spec = specs.windows_disk("gpt", literal(dumps_off()), files=demo.driver_files(), size_mib=96)
    return image_cache(spec, "folder").copy_to(tmp_path / "disk")


def crash_control(hive_file) -> dict:
    reg = Registry.Registry(io.BytesIO(hive_file.read_bytes()))
    return {cs: {v.name(): v.value() for v in reg.open(f"{cs}\\Control\\CrashControl").values()} for cs in SETS}


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(capsys, *args):
    code = main(list(args))
    return code, capsys.readouterr()


def test_diagnose_offers_it_and_it_works(folder, capsys, state_dir):
    target = str(folder.path)
    hive_file = folder.path / "Windows" / "System32" / "config" / "SYSTEM"
    before = sha(hive_file)
    code, out = run(capsys, "diagnose", target, "--json", "--no-verify")
    doc = json.loads(out.out)
    (s,) = [s for s in doc["suspects"] if s["kind"] == "crash dumps disabled"]
    assert s["fix"] == [f"offline-fix crashdump enable {shlex.quote(target)}"]

    argv = shlex.split(s["fix"][0])[1:]
    code, out = run(capsys, *argv, "--dry-run")
    assert code == 0 and "dry run" in out.out and sha(hive_file) == before
    assert "CrashDumpEnabled" in out.out

    code, out = run(capsys, *argv)
    assert code == 0, out.err
    values = crash_control(hive_file)
    for cs in SETS:
        assert (values[cs]["CrashDumpEnabled"], values[cs]["AutoReboot"]) == (2, 0)
        assert values[cs]["MinidumpDir"] == "%SystemRoot%\\Minidump"  # untouched
    code, out = run(capsys, "diagnose", target, "--json", "--no-verify")
    assert not [s for s in json.loads(out.out)["suspects"] if s["kind"] == "crash dumps disabled"]

    code, out = run(capsys, *argv)
    assert code == 0 and "nothing to change" in out.out
    code, out = run(capsys, "undo", target, "--all")
    assert code == 0 and sha(hive_file) == before


def test_types(folder, capsys, state_dir):
    target = str(folder.path)
    hive_file = folder.path / "Windows" / "System32" / "config" / "SYSTEM"
    assert run(capsys, "crashdump", "enable", target, "--type", "active")[0] == 0
    values = crash_control(hive_file)
    assert (values["ControlSet001"]["CrashDumpEnabled"], values["ControlSet001"]["FilterPages"]) == (1, 1)
    assert run(capsys, "crashdump", "enable", target, "--type", "small")[0] == 0
    values = crash_control(hive_file)
    assert values["ControlSet002"]["CrashDumpEnabled"] == 3 and "FilterPages" not in values["ControlSet002"]
    code, out = run(capsys, "crashdump", "enable", target, "--type", "huge")
    assert code == 2 and "Traceback" not in out.err


def test_on_a_vhdx_and_undo(image_cache, tmp_path, capsys, state_dir):
    spec = specs.windows_disk("gpt", literal(dumps_off()), size_mib=96)
    img = image_cache(spec, "vhdx").copy_to(tmp_path / "disk.vhdx")
    before = sha(img.path)
    code, out = run(capsys, "crashdump", "enable", str(img.path), "--json")
    assert code == 0 and json.loads(out.out)["status"] == "verified"
    assert sha(img.path) != before
    assert run(capsys, "undo", str(img.path), "--all")[0] == 0
    assert sha(img.path) == before
