"""Test-disk image builder: real NTFS (mkntfs + libntfs-3g), GPT/MBR (sfdisk), VHD/VHDX (qemu-img).

    from images import build, specs
    img = build(specs.minimal_windows(system=b"regf..."), tmp_path / "disk.vhdx", "vhdx")

Command line: ``python -m images.build SPEC.json -o OUT [--format F]``. See images/README.md.
"""

from images.builder import BuiltImage, Partition, build
from images.spec import DiskSpec, Link, Source, SpecError, VolumeSpec, literal, path, random, zeros

__all__ = [
    "BuiltImage",
    "DiskSpec",
    "Link",
    "Partition",
    "Source",
    "SpecError",
    "VolumeSpec",
    "build",
    "literal",
    "path",
    "random",
    "zeros",
]
