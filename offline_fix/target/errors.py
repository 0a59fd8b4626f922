"""Errors of the target layer: containers, partition tables, filesystems."""

from __future__ import annotations

from offline_fix.errors import CorruptInput, Unsupported


class ContainerError(CorruptInput):
    """A disk image container (VHD, VHDX ...) is broken or truncated."""


class VhdError(ContainerError):
    pass


class VhdxError(ContainerError):
    pass


class PartitionTableError(CorruptInput):
    pass


class FilesystemError(CorruptInput):
    pass


class UnsupportedContainer(Unsupported):
    """Sound, but not something offline-fix handles (differencing disks, pending VHDX logs ...)."""
