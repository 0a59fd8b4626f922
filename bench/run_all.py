"""Run every benchmark in bench/ (each prints its own figures and ratios against its peer)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import bench


def main() -> int:
    failed = []
    for info in sorted(pkgutil.iter_modules(bench.__path__), key=lambda m: m.name):
        if info.name in ("common", "run_all") or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.{info.name}")
        if not hasattr(module, "main"):
            continue
        print(f"== bench.{info.name}", flush=True)
        start = time.perf_counter()
        argv, sys.argv = sys.argv, [f"bench.{info.name}"]
        try:
            code = module.main()
        except SystemExit as exc:
            code = exc.code
        finally:
            sys.argv = argv
        if code not in (0, None):
            failed.append(info.name)
        print(f"   ({time.perf_counter() - start:.1f} s)\n", flush=True)
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
