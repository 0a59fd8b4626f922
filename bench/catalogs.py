"""Benchmark: index a CatRoot of 5,000 catalogs and verify 400 drivers, against raw limits.

    .venv/bin/python -m bench.catalogs [--catalogs 5000] [--drivers 400] [--cache DIR]

The corpus (catalogs signed by a test CA, minimal PE drivers, a quarter of them with embedded
signatures) is generated once into a cache folder outside the repository (default
$TMPDIR/offline-fix-bench/catalogs-<n>-<m>) and reused. Each run measures, on the same files:

- raw read: open + read of every catalog (the page cache is warmed first, for both sides);
- hashlib: SHA-256 over the same catalog bytes (in memory);
- index cold: build_index with an empty state folder (read + parse + write the cache);
- index warm: build_index again (stat + cache);
- drivers: raw read + SHA-1 and SHA-256 over the driver bytes, versus driver_verdict for each
  driver (Authenticode hashes, embedded signature checks, catalog lookups and catalog
  signature checks).

Ratios are ours / (raw read + hashlib). Goal: within 2x.

The machine may be shared: each measurement is repeated ``--rounds`` times (default 5), limits
and ours interleaved, and the best time of each is reported. Every cold round starts with an
empty state folder and no learned catalog member shapes (catalog_scan.reset_shapes), and every
verify round with a fresh index (no memoized catalog signature results).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

from images.synth.signing import PINNED, CatFile, build_catalog, build_pe, make_ca, sign_pe  # noqa: E402

from offline_fix.signing.catalog_scan import reset_shapes  # noqa: E402
from offline_fix.signing.index import build_index, catalog_sources  # noqa: E402
from offline_fix.signing.pe import authenticode_digests  # noqa: E402
from offline_fix.signing.verdict import driver_verdict  # noqa: E402
from offline_fix.signing.verify import TrustStore  # noqa: E402

CORPUS_VERSION = 1


def build_corpus(root: Path, n_catalogs: int, n_drivers: int) -> None:
    rng = random.Random(1234)
    ca = make_ca("Bench")
    catroot, drivers = root / "CatRoot", root / "drivers"
    catroot.mkdir(parents=True)
    drivers.mkdir()
    (root / "root.der").write_bytes(ca.chain_der[1])
    listed: dict[int, list[CatFile]] = {}
    for i in range(n_drivers):
        image = build_pe(seed=i, text_size=rng.choice([0x2000, 0x8000, 0x10000, 0x40000]),
                         data_size=rng.choice([0x400, 0x1000, 0x4000]))
        name = f"drv{i:04d}.sys"
        if i % 4 == 0:
            image = sign_pe(image, ca)
        else:
            d = authenticode_digests(image)
            listed.setdefault(rng.randrange(n_catalogs), []).append(CatFile(name, d["sha1"], d["sha256"]))
        (drivers / name).write_bytes(image)
    for c in range(n_catalogs):
        files = list(listed.get(c, []))
        for k in range(rng.randint(1, 8)):  # other package files: random digests
            files.append(CatFile(f"file{c}_{k}.dll", rng.randbytes(20), rng.randbytes(32)))
        version = 1 if c % 10 == 0 else 2
        (catroot / f"Package_{c:05d}~31bf3856ad364e35~amd64~~10.0.17763.1.cat").write_bytes(
            build_catalog(files, ca, version))
        if c and c % 1000 == 0:
            print(f"  built {c} catalogs", file=sys.stderr)
    (root / "complete").write_text(str(CORPUS_VERSION))


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def read_all(paths):
    total = 0
    for p in paths:
        with open(p, "rb") as f:
            total += len(f.read())
    return total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalogs", type=int, default=5000)
    ap.add_argument("--drivers", type=int, default=400)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    root = args.cache or Path(tempfile.gettempdir()) / "offline-fix-bench" / f"catalogs-{args.catalogs}-{args.drivers}"
    if not (root / "complete").is_file():
        if root.exists():
            shutil.rmtree(root)
        print(f"building corpus in {root} (once) ...", file=sys.stderr)
        t, _ = timed(lambda: build_corpus(root, args.catalogs, args.drivers))
        print(f"  corpus built in {t:.1f} s", file=sys.stderr)
    from cryptography import x509

    trust = TrustStore.microsoft([x509.load_der_x509_certificate((root / "root.der").read_bytes())])
    cat_paths = sorted((root / "CatRoot").iterdir())
    drv_paths = sorted((root / "drivers").iterdir())

    read_all(cat_paths)  # warm the page cache for every measurement below
    read_all(drv_paths)
    blobs = [p.read_bytes() for p in cat_paths]
    dblobs = [p.read_bytes() for p in drv_paths]
    TrustStore.microsoft()  # bundle load is a one-off, not per driver
    best: dict[str, float] = {}

    def keep(name, fn):
        t, out = timed(fn)
        best[name] = min(best.get(name, t), t)
        return out

    for _ in range(max(1, args.rounds)):
        nbytes = keep("read", lambda: read_all(cat_paths))
        keep("hash", lambda: [hashlib.sha256(b).digest() for b in blobs])
        state = Path(tempfile.mkdtemp(prefix="offline-fix-bench-state-"))
        try:
            reset_shapes()
            idx = keep("cold", lambda: build_index(catalog_sources(root / "CatRoot"), state_dir=state))
            idx2 = keep("warm", lambda: build_index(catalog_sources(root / "CatRoot"), state_dir=state))
            assert idx2.stats["cached"] == len(cat_paths)
            fresh = build_index(catalog_sources(root / "CatRoot"), state_dir=state)
        finally:
            shutil.rmtree(state, ignore_errors=True)
        dbytes = keep("dread", lambda: read_all(drv_paths))
        keep("dhash", lambda: [(hashlib.sha1(b).digest(), hashlib.sha256(b).digest()) for b in dblobs])
        verdicts = keep("verify", lambda: [driver_verdict(p, catroot=fresh, trust=trust, at=PINNED)
                                           for p in drv_paths])
    t_read, t_hash, t_cold, t_warm = best["read"], best["hash"], best["cold"], best["warm"]
    t_dread, t_dhash, t_verify = best["dread"], best["dhash"], best["verify"]
    limit = t_read + t_hash
    dlimit = t_dread + t_dhash
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v.verdict] = counts.get(v.verdict, 0) + 1

    n = len(cat_paths)
    print(f"corpus: {n} catalogs ({nbytes / 1e6:.1f} MB, {sum(e.member_count for e in idx.entries.values())} "
          f"members), {len(drv_paths)} drivers ({dbytes / 1e6:.1f} MB) in {root}")
    print(f"raw read catalogs        {t_read * 1000:8.1f} ms")
    print(f"hashlib sha256 catalogs  {t_hash * 1000:8.1f} ms")
    print(f"  limit (read + hash)    {limit * 1000:8.1f} ms   {n / limit:10.0f} catalogs/s")
    print(f"index cold               {t_cold * 1000:8.1f} ms   {n / t_cold:10.0f} catalogs/s   ratio {t_cold / limit:5.2f}x")
    print(f"index warm (cache)       {t_warm * 1000:8.1f} ms   {n / t_warm:10.0f} catalogs/s   ratio {t_warm / limit:5.2f}x")
    print(f"raw read drivers         {t_dread * 1000:8.1f} ms")
    print(f"hashlib sha1+sha256      {t_dhash * 1000:8.1f} ms")
    print(f"  limit (read + hash)    {dlimit * 1000:8.1f} ms")
    print(f"verify all drivers       {t_verify * 1000:8.1f} ms   ratio {t_verify / dlimit:5.2f}x   verdicts {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
