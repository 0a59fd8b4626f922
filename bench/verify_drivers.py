"""Benchmark: `catroot check`, `drivers verify` and `catroot restore` end to end, on a disk.

    .venv/bin/python -m bench.verify_drivers [--catalogs 5000] [--drivers 400] [--formats folder,raw]

The corpus of bench/catalogs.py (test-CA catalogs, minimal PE drivers, a quarter with embedded
signatures) is put on a Windows disk, built once into $TMPDIR/offline-fix-bench: the catalogs in
CatRoot\\{F750E6C3-...} and again in servicing\\Packages, the drivers in System32\\drivers, one
driver service per driver in the SYSTEM hive. A second disk has an empty CatRoot (the field
story) for `catroot restore`. Each run measures, in one process, against the raw limits of the
same run (reading the same files from the corpus folder, page cache warm, and hashlib SHA-256 /
SHA-1+SHA-256 over the same bytes):

- catroot check, cold (empty state folder: every catalog read and parsed) and warm (cache);
- drivers verify, warm catalog cache (Authenticode hashes, embedded signatures, catalog lookups
  and the signatures of the catalogs that were hit);
- catroot restore of every catalog into the empty CatRoot (overlay, journal, writes, and the
  independent re-read of every created file) on a private copy of the second disk.

Ratios are ours / limit; the goal is within 2x for check and verify. Exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.common import CACHE, REPO

sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def _system_hive(names: list[str]) -> bytes:
    from offline_fix.hive.structures import REG_DWORD, REG_EXPAND_SZ
    from offline_fix.hive.writer import HiveWriter, new_hive

    hive = new_hive("SYSTEM")
    w = HiveWriter(hive)
    w.create_key("Select")
    w.set_value("Select", "Current", REG_DWORD, 1)
    for name in names:
        key = f"ControlSet001\\Services\\{name[:-4]}"
        w.create_key(key)
        w.set_value(key, "Type", REG_DWORD, 1)
        w.set_value(key, "Start", REG_DWORD, 3)
        w.set_value(key, "ImagePath", REG_EXPAND_SZ, f"System32\\drivers\\{name}")
    w.commit()
    return bytes(hive.buf)


def _disks(corpus: Path, fmt: str):
    """(full disk, disk with an empty CatRoot) for the corpus, built once per format."""
    from images import cache, specs

    cats = {p.name: p for p in sorted((corpus / "CatRoot").iterdir())}
    drivers = {p.name: p for p in sorted((corpus / "drivers").iterdir())}
    size = 64 + 3 * (sum(p.stat().st_size for p in cats.values()) + sum(p.stat().st_size for p in drivers.values())) // (1 << 20)
    hive = _system_hive(list(drivers))
    full = specs.windows_disk("bare", hive, drivers=drivers, catalogs=cats, packages=cats, size_mib=size)
    broken = specs.windows_disk("bare", hive, drivers=drivers, packages=cats, size_mib=size)
    return cache.get(full, CACHE, fmt), cache.get(broken, CACHE, fmt)


def _run(args: list[str]) -> tuple[float, int, str]:
    from offline_fix.cli import main

    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return time.perf_counter() - start, code, out.getvalue() + err.getvalue()


def _limits(corpus: Path) -> tuple[float, float, int, int]:
    cats = sorted((corpus / "CatRoot").iterdir())
    drvs = sorted((corpus / "drivers").iterdir())
    for p in cats + drvs:  # warm the page cache
        p.read_bytes()
    start = time.perf_counter()
    blobs = [p.read_bytes() for p in cats]
    for b in blobs:
        hashlib.sha256(b).digest()
    t_cat = time.perf_counter() - start
    start = time.perf_counter()
    for p in drvs:
        b = p.read_bytes()
        hashlib.sha1(b).digest()
        hashlib.sha256(b).digest()
    t_drv = time.perf_counter() - start
    return t_cat, t_drv, len(cats), len(drvs)


def main(argv=None) -> int:
    from bench.catalogs import build_corpus

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalogs", type=int, default=5000)
    ap.add_argument("--drivers", type=int, default=400)
    ap.add_argument("--formats", default="folder,raw")
    ap.add_argument("--no-restore", action="store_true", help="Skip the catroot restore measurement.")
    args = ap.parse_args(argv)
    corpus = CACHE / f"catalogs-{args.catalogs}-{args.drivers}"
    if not (corpus / "complete").is_file():
        shutil.rmtree(corpus, ignore_errors=True)
        print(f"building the corpus in {corpus} (once) ...", file=sys.stderr)
        build_corpus(corpus, args.catalogs, args.drivers)
    root = str(corpus / "root.der")
    t_cat, t_drv, n_cat, n_drv = _limits(corpus)
    print(f"corpus: {n_cat} catalogs, {n_drv} drivers ({corpus})")
    print(f"limit catalogs (read + sha256)      {t_cat * 1000:9.1f} ms   {n_cat / t_cat:9.0f} catalogs/s")
    print(f"limit drivers (read + sha1/sha256)  {t_drv * 1000:9.1f} ms")
    work = Path(tempfile.mkdtemp(prefix="offline-fix-bench-verify-"))
    os.environ["XDG_STATE_HOME"] = str(work / "state")  # journals and caches of this run only
    try:
        for fmt in args.formats.split(","):
            t0 = time.perf_counter()
            full, broken = _disks(corpus, fmt)
            print(f"[{fmt}] disks ready in {time.perf_counter() - t0:.1f} s ({full.path})")
            target = str(full.path)
            t_cold, code, _ = _run(["catroot", "check", target])
            assert code == 0, f"catroot check on the full disk: exit {code}"
            t_warm, _, _ = _run(["catroot", "check", target])
            # catroot check reads CatRoot and Packages (2 x the catalogs): the limit doubles
            print(f"[{fmt}] catroot check cold   {t_cold * 1000:9.1f} ms   {2 * n_cat / t_cold:9.0f} catalogs/s"
                  f"   ratio {t_cold / (2 * t_cat):5.2f}x")
            print(f"[{fmt}] catroot check warm   {t_warm * 1000:9.1f} ms   {2 * n_cat / t_warm:9.0f} catalogs/s"
                  f"   ratio {t_warm / (2 * t_cat):5.2f}x")
            t_verify, code, text = _run(["drivers", "verify", target, "--trust-root", root, "--at", "2024-06-01"])
            last = text.strip().splitlines()[-1] if text.strip() else ""
            print(f"[{fmt}] drivers verify       {t_verify * 1000:9.1f} ms   ratio {t_verify / t_drv:5.2f}x   {last}")
            if args.no_restore:
                continue
            copy = broken.copy_to(work / f"broken-{fmt}{Path(str(broken.path)).suffix}")
            t_restore, code, text = _run(["catroot", "restore", str(copy.path)])
            assert code == 0, text[-500:]
            print(f"[{fmt}] catroot restore      {t_restore * 1000:9.1f} ms   {n_cat / t_restore:9.0f} catalogs/s"
                  f"   ({n_cat} catalogs copied, journaled, re-read)")
            t_check, code, _ = _run(["catroot", "check", str(copy.path), "--no-contents"])
            assert code == 0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
