"""Errors of the registry format layer: one root (HiveError), a subclass per structure."""

from __future__ import annotations

from offline_fix.errors import CorruptInput, Refused


class HiveError(CorruptInput):
    """Broken REGF input."""


class BaseBlockError(HiveError):
    """The 4096-byte base block (file header) is unusable."""


class HiveBinError(HiveError):
    """A hive bin header is wrong (signature, offset, size)."""


class CellError(HiveError):
    """A cell is out of range, has a bad size or an unexpected signature."""


class LogError(HiveError):
    """A transaction log is damaged or does not continue the primary's sequence."""


class DirtyHive(Refused):
    """A write was asked of a hive whose transaction logs hold changes not yet in the primary."""
