"""The registry format layer: REGF bytes only (see ../shared/docs/DESIGN.md).

    from offline_fix.hive import Hive
    h = Hive.open("SYSTEM")
    h.key(r"ControlSet001\\Services\\Tcpip").get("Start")
"""

from offline_fix.hive.errors import (
    BaseBlockError,
    CellError,
    DirtyHive,
    HiveBinError,
    HiveError,
    LogError,
)
from offline_fix.hive.reader import Hive, Key, KeyNotFound, Value

__all__ = [
    "Hive",
    "Key",
    "Value",
    "KeyNotFound",
    "HiveError",
    "BaseBlockError",
    "HiveBinError",
    "CellError",
    "LogError",
    "DirtyHive",
]
