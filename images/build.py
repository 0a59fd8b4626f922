"""Command line: ``python -m images.build SPEC.json -o OUT [--format F] [--json]``.

Prints a summary (or, with --json, one JSON document) of what was built; exit codes follow
offline-fix (0 ok, 2 usage, 3 not found, 5 bad spec, 6 missing tool, 7 refused, 8 tool failed).
Importing this module keeps ``images.build(spec, out)`` callable: the module object forwards
calls to images.builder.build.
"""

from __future__ import annotations

import argparse
import sys
import types

from offline_fix.errors import OfflineFixError

from images.builder import build, describe, to_json_text
from images.spec import FORMATS, load

FORMAT_BY_SUFFIX = {".img": "raw", ".raw": "raw", ".vhd": "vhd-fixed", ".vhdx": "vhdx"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m images.build", description="Build a test disk from a JSON spec.")
    parser.add_argument("spec", help="the JSON spec (see images/README.md)")
    parser.add_argument("-o", "--out", required=True, help="output file (a folder for --format folder); must not exist")
    parser.add_argument("-f", "--format", choices=FORMATS, help="output format (default: spec's, else from the suffix, else raw)")
    parser.add_argument("--json", action="store_true", help="print what was built as one JSON document")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    try:
        spec = load(args.spec)
        suffix = "." + args.out.rsplit(".", 1)[-1].lower() if "." in args.out else ""
        fmt = args.format or spec.format or FORMAT_BY_SUFFIX.get(suffix, "raw")
        img = build(spec, args.out, fmt)
    except OfflineFixError as exc:
        print(f"images.build: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("images.build: interrupted", file=sys.stderr)
        return 130
    print(to_json_text(img) if args.json else describe(img))
    return 0


class _CallableModule(types.ModuleType):
    """``import images.build`` rebinds the package attribute to this module; keep it callable."""

    def __call__(self, *args, **kwargs):
        return build(*args, **kwargs)


if __name__ == "__main__":
    sys.exit(main())
else:
    sys.modules[__name__].__class__ = _CallableModule
