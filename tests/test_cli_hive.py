"""``offline-fix hive info|query|export|recover`` through offline_fix.cli.main, with exit codes.

Oracles: hivex and python-registry (counts, values, key lists), hivexregedit (imports our .reg
files back), and MANIFEST.md (dirty state, sequence numbers, Windows' own recovered hives).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import pytest

from offline_fix.cli import main

pytestmark = pytest.mark.realdata

hivex = pytest.importorskip("hivex", reason="python3-hivex not linked into the venv (run `make venv`)")

SERVICES = r"ControlSet001\Services"


@pytest.fixture(scope="module")
def system(realdata):
    return str(realdata("regipy/SYSTEM.xz"))


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def hivex_counts(path):
    h = hivex.Hivex(str(path))
    keys = values = 0
    stack = [h.root()]
    while stack:
        node = stack.pop()
        keys += 1
        values += len(h.node_values(node))
        stack.extend(h.node_children(node))
    return keys, values


def hivex_node(h, path):
    node = h.root()
    for part in filter(None, path.split("\\")):
        node = h.node_get_child(node, part)
    return node


# -- info -------------------------------------------------------------------------------------------
def test_info_json(capsys, system):
    code, out, err = run(capsys, "hive", "info", system, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["keys"], doc["values"]) == hivex_counts(system) == (30756, 73456)
    assert doc["dirty"] is False and doc["sequence"] == [13983, 13983]  # MANIFEST
    assert doc["checksum_ok"] is True
    # every byte of the hive bins data is a bin header, a free cell or an allocated cell
    assert doc["free_bytes"] + doc["allocated_bytes"] + 32 * doc["bins"] == doc["hive_bins_size"]
    assert doc["base_block"]["version"].startswith("1.")


def test_info_text(capsys, system):
    code, out, _err = run(capsys, "hive", "info", system)
    assert code == 0
    assert "clean (sequence 13983/13983, checksum ok)" in out
    assert "keys      30,756" in out and "values    73,456" in out


def test_info_dirty_hive(capsys, realdata):
    code, out, err = run(capsys, "hive", "info", realdata("regipy/SYSTEM_2.xz"), "--json")
    assert code == 1  # ran fine, found a problem: the hive is dirty
    doc = json.loads(out)
    assert doc["dirty"] is True and doc["sequence"] == [205, 204]  # MANIFEST
    assert "dirty" in err and "recover" in err


def test_info_damaged_hive(capsys, realdata):
    code, out, err = run(capsys, "hive", "info", realdata("regipy/corrupted_system_hive.xz"), "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["warning_count"] > 0 and doc["warnings"] and doc["keys"] > 1000


@pytest.mark.parametrize(("make", "code"), [
    (lambda tmp: tmp / "missing", 3),
    (lambda tmp: tmp, 3),
    (lambda tmp: _write(tmp / "garbage", b"\x00garbage" * 1000), 5),
    (lambda tmp: _write(tmp / "short", b"regf"), 5),
])
def test_info_bad_input_is_one_line(capsys, tmp_path, make, code):
    result, out, err = run(capsys, "hive", "info", make(tmp_path))
    assert result == code
    assert out == "" and err.count("\n") == 1 and err.startswith("offline-fix: error:")


def _write(path, data):
    path.write_bytes(data)
    return path


# -- query ------------------------------------------------------------------------------------------
def test_query_value_reg_exe_format(capsys, system):
    h = hivex.Hivex(system)
    start = h.value_dword(h.node_get_value(hivex_node(h, r"ControlSet001\Services\Tcpip"), "Start"))
    code, out, _err = run(capsys, "hive", "query", system, r"ControlSet001\Services\Tcpip", "/v", "Start",
                          "--root", "HKLM\\SYSTEM")
    assert code == 0
    assert out == f"\nHKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet001\\services\\Tcpip\n    Start    REG_DWORD    {start:#x}\n\n"


def test_query_key_lists_values_then_subkeys(capsys, system):
    h = hivex.Hivex(system)
    node = hivex_node(h, r"ControlSet001\Services\Tcpip")
    code, out, _err = run(capsys, "hive", "query", system, r"HKLM\SYSTEM\ControlSet001\Services\Tcpip",
                          "--root", "HKEY_LOCAL_MACHINE\\SYSTEM")
    assert code == 0
    lines = out.split("\n")
    head = r"HKEY_LOCAL_MACHINE\SYSTEM\ControlSet001\services\Tcpip"
    assert lines[0] == "" and lines[1] == head
    value_lines = [line for line in lines if line.startswith("    ")]
    assert [line.split("    ")[1] for line in value_lines] == [h.value_key(v) for v in h.node_values(node)]
    subkeys = [line for line in lines if line.startswith(head + "\\")]
    assert subkeys == [f"{head}\\{h.node_name(c)}" for c in h.node_children(node)]
    assert "    ImagePath    REG_EXPAND_SZ    System32\\drivers\\tcpip.sys" in value_lines


def test_query_recursive_search(capsys, system):
    h = hivex.Hivex(system)
    expected = 0
    stack = [hivex_node(h, SERVICES)]
    while stack:
        node = stack.pop()
        expected += any(h.value_key(v).upper() == "IMAGEPATH" for v in h.node_values(node))
        stack.extend(h.node_children(node))
    code, out, _err = run(capsys, "hive", "query", system, SERVICES, "/v", "imagepath", "/s")
    assert code == 0
    assert out.endswith(f"\nEnd of search: {expected} match(es) found.\n")
    assert out.count("    ImagePath    REG_") == expected


def test_query_default_value_and_json(capsys, system):
    from Registry import Registry

    path = r"ControlSet001\Control\Class\{4D36E968-E325-11CE-BFC1-08002BE10318}"
    default = Registry.Registry(system).open(path).value("(default)").value()
    code, out, _err = run(capsys, "hive", "query", system, path, "/ve")
    assert code == 0 and f"    (Default)    REG_SZ    {default}\n" in out
    code, out, _err = run(capsys, "hive", "query", system, path, "--json")
    doc = json.loads(out)
    assert doc["dirty"] is False and len(doc["keys"]) == 1
    values = {v["name"]: v for v in doc["keys"][0]["values"]}
    assert values[""]["data"] == default and values[""]["type"] == "REG_SZ"


def test_query_missing_key_and_value(capsys, system):
    code, _out, err = run(capsys, "hive", "query", system, r"ControlSet001\Services\NoSuchDriver")
    assert code == 3 and "NoSuchDriver" in err
    code, _out, err = run(capsys, "hive", "query", system, r"ControlSet001\Services\Tcpip", "/v", "Nope")
    assert code == 3 and "Nope" in err


def test_query_dirty_hive_warns(capsys, realdata):
    code, out, err = run(capsys, "hive", "query", realdata("regipy/SYSTEM_2.xz"), "Select", "/v", "Current")
    assert code == 0 and "    Current    REG_DWORD    0x" in out
    assert "dirty" in err


# -- export -----------------------------------------------------------------------------------------
def test_export_format(capsys, system, tmp_path):
    out_file = tmp_path / "tcpip.reg"
    code, out, err = run(capsys, "hive", "export", system, r"ControlSet001\Services\Tcpip", "-o", out_file,
                         "--root", "HKLM\\SYSTEM")
    assert code == 0, err
    data = out_file.read_bytes()
    assert data.startswith(b"\xff\xfe")  # UTF-16LE byte order mark
    text = data.decode("utf-16")
    assert text.startswith("Windows Registry Editor Version 5.00\r\n\r\n"
                           "[HKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet001\\services\\Tcpip]\r\n")
    assert '"DisplayName"="@%SystemRoot%\\\\system32\\\\tcpipcfg.dll,-50003"\r\n' in text
    hex_lines = [line for line in text.split("\r\n") if "=hex" in line or line.startswith("  ")]
    assert hex_lines and all(len(line) <= 80 for line in hex_lines)  # wrapped as regedit wraps hex
    assert text.endswith("\r\n\r\n")


def test_export_refuses_to_overwrite(capsys, system, tmp_path):
    out_file = tmp_path / "x.reg"
    out_file.write_text("keep me")
    code, _out, err = run(capsys, "hive", "export", system, "Select", "-o", out_file)
    assert code == 7 and out_file.read_text() == "keep me" and "--force" in err
    assert run(capsys, "hive", "export", system, "Select", "-o", out_file, "--force")[0] == 0
    assert out_file.read_bytes().startswith(b"\xff\xfe")


@pytest.mark.skipif(shutil.which("hivexregedit") is None, reason="hivexregedit (libwin-hivex-perl) not installed")
def test_export_imports_back_with_hivexregedit(capsys, system, realdata, tmp_path):
    """Our .reg file, merged into an empty hive by hivexregedit, gives the same values (types and
    bytes, as hivex reads them) as the source hive."""
    key = r"ControlSet001\Control\Session Manager"
    reg = tmp_path / "session.reg"
    assert run(capsys, "hive", "export", system, key, "-o", reg, "--root", "HKLM\\T")[0] == 0
    text = reg.read_bytes().decode("utf-16")
    assert "=hex(7):" in text and "=hex(2):" in text and "=dword:" in text and '="' in text and "=hex:" in text
    # hivexregedit reads UTF-8 and needs the parents of the exported key
    body = text.split("\r\n", 2)[2]
    utf8 = tmp_path / "session8.reg"
    utf8.write_text("Windows Registry Editor Version 5.00\r\n\r\n[HKEY_LOCAL_MACHINE\\T\\ControlSet001]\r\n"
                    "\r\n[HKEY_LOCAL_MACHINE\\T\\ControlSet001\\Control]\r\n\r\n" + body, encoding="utf-8")
    target = tmp_path / "merged"
    target.write_bytes(realdata("yarp/EmptyHive").read_bytes())
    subprocess.run(["hivexregedit", "--merge", str(target), "--prefix", "HKEY_LOCAL_MACHINE\\T", str(utf8)],
                   check=True, capture_output=True, timeout=120)

    def tree(path):
        h = hivex.Hivex(str(path))
        out = {}
        stack = [(hivex_node(h, key), "")]
        while stack:
            node, rel = stack.pop()
            out[rel.upper()] = sorted((h.value_key(v), *h.value_value(v)) for v in h.node_values(node))
            stack.extend((c, f"{rel}\\{h.node_name(c)}") for c in h.node_children(node))
        return out

    source, merged = tree(system), tree(target)
    assert len(source) == 89 and merged == source


# -- recover ----------------------------------------------------------------------------------------
def test_recover_new_format_matches_windows(capsys, realdata, tmp_path):
    hive = realdata("yarp/NewDirtyHive1/NewDirtyHive")
    oracle = realdata("yarp/NewDirtyHive1/RecoveredHive_Windows10").read_bytes()
    out_file = tmp_path / "recovered"
    code, out, err = run(capsys, "hive", "recover", hive, "-o", out_file, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert sorted(doc["logs_used"]) == ["NewDirtyHive.LOG1", "NewDirtyHive.LOG2"]
    assert len(doc["applied_entries"]) == 4 and doc["last_sequence"] == doc["applied_entries"][-1]
    data = out_file.read_bytes()
    assert data[4096:] == oracle[4096:]  # MANIFEST: byte for byte from offset 4096, as Windows 10
    assert doc["sha256"] == hashlib.sha256(data).hexdigest()
    code, out, _err = run(capsys, "hive", "info", out_file, "--json")
    assert code == 0 and json.loads(out)["dirty"] is False


def test_recover_with_named_logs(capsys, realdata, tmp_path):
    hive = realdata("regipy/transactions_NTUSER.DAT.xz")
    log1 = realdata("regipy/transactions_ntuser.dat.log1.xz")
    log2 = realdata("regipy/transactions_ntuser.dat.log2.xz")
    out_file = tmp_path / "NTUSER.recovered"
    code, out, err = run(capsys, "hive", "recover", hive, "--log", log1, "--log", log2, "-o", out_file)
    assert code == 0, err
    assert "566..588" in out  # MANIFEST: LOG1 applies entries 566 to 588
    assert hivex_counts(out_file)[0] > 0  # hivex opens the result


def test_recover_refuses_logs_that_do_not_continue(capsys, realdata, tmp_path):
    hive = realdata("regipy/SYSTEM_B.xz")
    logs = [realdata("regipy/SYSTEM_B.LOG1.xz"), realdata("regipy/SYSTEM_B.LOG2.xz")]
    out_file = tmp_path / "SYSTEM_B.recovered"
    code, out, err = run(capsys, "hive", "recover", hive, "--log", logs[0], "--log", logs[1], "-o", out_file)
    assert code == 5 and not out_file.exists()  # MANIFEST: its logs do not continue its sequence
    assert err.startswith("offline-fix: error:") and err.count("\n") == 1


def test_recover_never_writes_over_its_input(capsys, realdata_dir, tmp_path):
    src = realdata_dir / "yarp" / "NewDirtyHive1"
    for name in ("NewDirtyHive", "NewDirtyHive.LOG1", "NewDirtyHive.LOG2"):
        shutil.copy(src / name, tmp_path / name)
    hive = tmp_path / "NewDirtyHive"
    before = hive.read_bytes()
    code, _out, err = run(capsys, "hive", "recover", hive, "-o", hive, "--force")
    assert code == 7 and hive.read_bytes() == before and "input" in err


def test_tolerant_query_skips_damage_with_exit_1(capsys, realdata):
    hive = realdata("yarp/BadListHive")
    code, out, err = run(capsys, "hive", "query", hive, "", "/s")
    assert code == 5 and out == "" and "Parent" in err  # strict: the damaged list is an error
    code, out, err = run(capsys, "hive", "query", hive, "", "/s", "--tolerant", "--root", "HKLM\\X")
    assert code == 1 and "skipped" in err
    assert [line for line in out.split("\n") if line] == [
        "HKEY_LOCAL_MACHINE\\X", "HKEY_LOCAL_MACHINE\\X\\1", "HKEY_LOCAL_MACHINE\\X\\2",
        "HKEY_LOCAL_MACHINE\\X\\3", "HKEY_LOCAL_MACHINE\\X\\3\\subkey", "HKEY_LOCAL_MACHINE\\X\\4"]
