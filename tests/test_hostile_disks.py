"""Hostile disks (images/hostile.py) against the real command line, run as subprocesses with a
timeout: ``inspect --json``, ``reg query`` and ``reg add`` each end with a documented exit code
(never 10, never a traceback, never a hang), one error line at most, the outcome this file
expects for that disk, and nothing written outside the target and the state folder (a decoy
folder the links point at is hashed before and after; the folder holding the disks must hold
nothing new).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from images import hostile

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 90  # seconds per command: far above the ~1 s each takes; reaching it is a hang
KEY = rf"HKLM\SYSTEM\CurrentControlSet\Services\{hostile.MARKER_SERVICE}"
DOCUMENTED = {0, 1, 2, 3, 4, 5, 6, 7, 8}  # README "Exit codes"; 10 is an internal error

# disk -> format -> (inspect, reg query, reg add) exit codes.
# 7: refused (a link not followed, names differing only in case); 5: corrupt input; 3: not found.
EXPECTED = {
    "config-junction-users": {"vhdx": (7, 7, 7), "folder": (3, 3, 3)},  # folder: C:/Users dangles
    "config-junction-host": {"vhdx": (7, 7, 7), "folder": (7, 7, 7)},
    "config-symlink-host": {"vhdx": (7, 7, 7), "folder": (7, 7, 7)},
    "config-symlink-escape": {"vhdx": (7, 7, 7), "folder": (7, 7, 7)},
    "system-symlink-host": {"vhdx": (0, 7, 7), "folder": (7, 7, 7)},  # inspect: install found, hive unreadable
    "link-loop": {"vhdx": (7, 7, 7), "folder": (7, 7, 7)},
    "names-control-chars": {"vhdx": (0, 0, 0), "folder": (0, 0, 0)},
    "names-backslash": {"vhdx": (3, 3, 3), "folder": (3, 3, 3)},
    "names-slash": {"vhdx": (3, 3, 3)},
    "names-case": {"vhdx": (0, 0, 7), "folder": (0, 0, 7)},
    "hive-cycle": {"vhdx": (0, 0, 5), "folder": (0, 0, 5)},  # reads are tolerant; a write is strict
    "hive-huge-value": {"vhdx": (0, 0, 5), "folder": (0, 0, 5)},
    "hive-markup-name": {"vhdx": (0, 0, 0)},
    "runs-outside-volume": {"vhdx": (0, 5, 5)},
    "mbr-outside-disk": {"vhdx": (0, 0, 0)},  # the bad entry is reported; the Windows volume is fine
    "ebr-loop": {"vhdx": (0, 0, 0)},
    "gpt-huge-count": {"vhdx": (5, 5, 5)},
}
CASES = [(name, fmt) for name, formats in EXPECTED.items() for fmt in formats]
IDS = [f"{n}-{f}" for n, f in CASES]


def test_every_hostile_disk_is_covered():
    assert set(EXPECTED) == set(hostile.NAMES)


def _tree_digest(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = "dir"
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(disks folder, decoy folder, state folder). The decoy holds what a follower of the links
    would find: a SYSTEM hive (a copy of the disks' own) and a file to overwrite."""
    base = tmp_path_factory.mktemp("hostile")
    decoy = base / "decoy"
    decoy.mkdir()
    (decoy / "SYSTEM").write_bytes(hostile.system_hive())
    (decoy / "notes.txt").write_text("must stay unchanged\n")
    disks = base / "disks"
    disks.mkdir()
    return disks, decoy, base / "state"


def _run(args: list[str], state: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, XDG_STATE_HOME=str(state), OFFLINE_FIX_DEBUG="")
    env.pop("OFFLINE_FIX_DEBUG")
    return subprocess.run([sys.executable, "-m", "offline_fix", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, errors="replace", timeout=TIMEOUT)


def _check_clean_exit(proc: subprocess.CompletedProcess, what: str) -> None:
    assert proc.returncode in DOCUMENTED, f"{what}: exit {proc.returncode}: {proc.stderr[-800:]}"
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, f"{what}: {proc.stderr[-800:]}"
    assert "internal error" not in proc.stderr, f"{what}: {proc.stderr[-400:]}"
    errors = [line for line in proc.stderr.splitlines() if line.startswith("offline-fix: error")]
    assert len(errors) <= 1, f"{what}: several error lines: {errors}"
    if proc.returncode not in (0, 1):
        assert errors, f"{what}: exit {proc.returncode} without an error line: {proc.stderr[-400:]}"


@pytest.mark.parametrize("name,fmt", CASES, ids=IDS)
def test_hostile_disk(name, fmt, world):
    disks, decoy, state = world
    before_decoy = _tree_digest(decoy)
    before_disks = set(os.listdir(disks))
    target = hostile.build(name, disks / f"{name}.{fmt}", fmt, decoy=decoy)
    commands = {
        "inspect": ["inspect", str(target), "--json"],
        "reg query": ["reg", "query", str(target), KEY],
        "reg add": ["reg", "add", str(target), KEY, "/v", "Start", "/t", "REG_DWORD", "/d", "4", "/f"],
    }
    with ThreadPoolExecutor(max_workers=2) as pool:  # the two reads in parallel, then the write
        reads = {what: pool.submit(_run, commands[what], state) for what in ("inspect", "reg query")}
        results = {what: f.result() for what, f in reads.items()}
    results["reg add"] = _run(commands["reg add"], state)

    for what, proc in results.items():
        _check_clean_exit(proc, f"{name} ({fmt}) {what}")
    if results["inspect"].returncode == 0 or results["inspect"].stdout.strip():
        doc = json.loads(results["inspect"].stdout)  # exactly one JSON document (none after an error line)
        assert doc["target"] == str(target)
    got = tuple(results[what].returncode for what in ("inspect", "reg query", "reg add"))
    assert got == EXPECTED[name][fmt], (got, {w: p.stderr[-300:] for w, p in results.items()})

    assert _tree_digest(decoy) == before_decoy, "something was written into the decoy folder"
    assert set(os.listdir(disks)) == before_disks | {target.name}, "something new appeared next to the disk"
    if got[2] == 0:  # the write went to the real hive, and reads back
        after = _run(["reg", "query", str(target), KEY, "/v", "Start"], state)
        assert after.returncode == 0 and "0x4" in after.stdout, after.stdout + after.stderr


def _refused_write(world, name: str) -> str:
    """Build NAME as a VHDX, run `reg add` on it; return its stderr after checking that the
    image is byte-identical afterwards."""
    disks, decoy, state = world
    target = hostile.build(name, disks / f"{name}-write.vhdx", "vhdx", decoy=decoy)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    proc = _run(["reg", "add", str(target), KEY, "/v", "Start", "/t", "REG_DWORD", "/d", "4", "/f"], state)
    assert hashlib.sha256(target.read_bytes()).hexdigest() == digest, "the refused write changed the image"
    return f"exit {proc.returncode}: {proc.stderr}"


def test_names_case_write_refusal_names_both_files(world):
    """Regression (hostile disks): config\\SYSTEM beside config\\system made `reg add` write one
    file while the independent re-read took the other (exit 8 after a rollback); now it is refused
    before anything is written."""
    result = _refused_write(world, "names-case")
    assert result.startswith("exit 7") and "'SYSTEM', 'system'" in result, result


def test_hive_cycle_write_is_refused_before_writing(world):
    """Regression (hostile disks): a SYSTEM hive whose subkey lists form a cycle made `reg add`
    write, then hang in the independent check (python-registry follows lists blindly)."""
    result = _refused_write(world, "hive-cycle")
    assert result.startswith("exit 5") and "a cycle" in result, result


def test_markup_and_escapes_in_hive_names_are_shown_inert(world):
    disks, decoy, state = world
    target = hostile.build("hive-markup-name", disks / "markup-text.vhdx", "vhdx", decoy=decoy)
    inspect = _run(["inspect", str(target)], state)
    _check_clean_exit(inspect, "inspect (text)")
    assert inspect.returncode == 0 and "[/evil]" in inspect.stdout
    query = _run(["reg", "query", str(target), r"HKLM\SYSTEM\CurrentControlSet\Control\ComputerName\ComputerName"], state)
    assert "\x1b" not in query.stdout, "an ANSI escape from the disk reached the terminal"


def test_independent_check_stops_at_a_cycle():
    """The python-registry walk of the independent check keeps a visited set (defence in depth
    behind the strict pre-write walk)."""
    from offline_fix.changes.registry import check_hive_independently

    problems = check_hive_independently(hostile.hive_with_cycle(), hostile.system_hive(), [])
    assert problems and "cycle" in problems[0]


def test_link_loop_in_a_folder_is_refused_not_an_internal_error(tmp_path):
    """Regression (hostile disks): a loop of symbolic links in a mounted folder raised OSError
    ELOOP out of FolderFS (exit 10)."""
    from offline_fix.errors import Refused
    from offline_fix.target.fs import FolderFS

    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(Refused, match="cannot be resolved"):
        FolderFS(str(tmp_path)).stat("a\\x")
