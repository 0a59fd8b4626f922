"""Soak: 200 disable / enable / undo cycles on one VHDX, in-process through offline_fix.cli.main.

Each cycle: ``drivers disable`` (change A: Start=4), ``drivers enable`` (change B: Start back as
the journal recorded it), ``undo --change B``, ``undo --change A``. After every cycle the image
must be byte-identical to the original; every 20 cycles its sha256 and the process's resident
memory are sampled. At the end: sha256 identical, ``qemu-img check`` passes, every change in the
journal is undone, and resident memory grew less than a generous bound after warm-up.

Marked slow (about 3 minutes on the 2-core helper): ``make soak`` or ``pytest -m slow``.
SOAK_CYCLES overrides the number of cycles.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import json
import os
import subprocess
import time

import pytest

import images
from images import specs
from images.synth.system import system_hive
from offline_fix.cli import main

pytestmark = pytest.mark.slow

CYCLES = int(os.environ.get("SOAK_CYCLES", "200"))
SAMPLE_EVERY = 20
DRIVER = "acmemon"  # a third-party minifilter of the synthetic Windows Server 2016 hive (not boot-critical)
RSS_GROWTH_LIMIT = 64 << 20  # bytes, from the first sample (after warm-up) to the last


def _rss() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def _change_id(*args: str) -> str:
    code, out, err = _run(*args, "--json")
    assert code == 0, f"{args}: exit {code}: {err}"
    doc = json.loads(out)
    assert doc["status"] == "verified", doc
    return doc["change_id"]


def test_soak_disable_enable_undo(tmp_path, state_dir, record_property):
    img = images.build(specs.minimal_windows(system_hive(), layout="gpt"), tmp_path / "soak.vhdx", "vhdx")
    target = str(img.path)
    original = _sha256(target)
    samples = []  # (cycle, rss bytes, seconds since start)
    started = time.perf_counter()
    for cycle in range(1, CYCLES + 1):
        a = _change_id("drivers", "disable", target, DRIVER)
        b = _change_id("drivers", "enable", target, DRIVER)
        for change in (b, a):
            code, _out, err = _run("undo", target, "--change", change)
            assert code == 0, f"cycle {cycle}: undo {change}: exit {code}: {err}"
        if cycle == 1 or cycle % SAMPLE_EVERY == 0:
            assert _sha256(target) == original, f"cycle {cycle}: the image differs from the original"
            gc.collect()
            samples.append((cycle, _rss(), time.perf_counter() - started))
    elapsed = time.perf_counter() - started

    assert _sha256(target) == original
    subprocess.run(["qemu-img", "check", "-q", "-f", "vhdx", target], check=True, capture_output=True, timeout=120)
    code, out, err = _run("journal", target, "--json")
    assert code == 0, err
    statuses = {c["status"] for c in json.loads(out)["changes"]}
    assert statuses == {"undone"}, statuses

    first = samples[1] if len(samples) > 1 else samples[0]  # after warm-up (imports, caches)
    growth = samples[-1][1] - first[1]
    rate = CYCLES / elapsed
    figures = ", ".join(f"{c}:{r / 2**20:.1f}MiB" for c, r, _ in samples)
    print(f"\nsoak: {CYCLES} cycles (4 journaled writes each) in {elapsed:.1f} s = {rate:.2f} cycles/s; "
          f"RSS by cycle {figures}; growth after warm-up {growth / 2**20:+.1f} MiB")
    record_property("cycles_per_second", round(rate, 3))
    record_property("rss_samples_mib", [round(r / 2**20, 1) for _, r, _ in samples])
    assert growth < RSS_GROWTH_LIMIT, f"resident memory grew {growth / 2**20:.1f} MiB: {figures}"
