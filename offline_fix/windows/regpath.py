"""reg.exe key paths on an offline install: HKLM\\SYSTEM\\CurrentControlSet\\... -> which hive file,
and which key inside it. CurrentControlSet is resolved through Select\\Current, as Windows does at
boot; it is not stored in the file."""

from __future__ import annotations

from dataclasses import dataclass

from offline_fix.errors import NotFound

ROOTS = ("HKLM", "HKEY_LOCAL_MACHINE")
HIVES = {
    "SYSTEM": r"Windows\System32\config\SYSTEM",
    "SOFTWARE": r"Windows\System32\config\SOFTWARE",
    "SAM": r"Windows\System32\config\SAM",
    "SECURITY": r"Windows\System32\config\SECURITY",
    "DEFAULT": r"Windows\System32\config\DEFAULT",
    "DRIVERS": r"Windows\System32\config\DRIVERS",
    "COMPONENTS": r"Windows\System32\config\COMPONENTS",
}


@dataclass(frozen=True)
class KeyPath:
    hive_name: str  # SYSTEM
    hive_file: str  # Windows\System32\config\SYSTEM (as named; the volume resolves its casing)
    key: str  # inside the hive, CurrentControlSet resolved: ControlSet001\Services\foo
    display: str  # HKEY_LOCAL_MACHINE\SYSTEM\ControlSet001\Services\foo

    def child(self, name: str) -> "KeyPath":
        key = f"{self.key}\\{name}" if self.key else name
        return KeyPath(self.hive_name, self.hive_file, key, f"{self.display}\\{name}")


def parse_key_path(text: str) -> tuple[str, list[str]]:
    parts = [p for p in text.replace("/", "\\").split("\\") if p]
    if len(parts) < 2 or parts[0].upper() not in ROOTS:
        raise NotFound(f"key path must start with HKLM\\<hive>, e.g. HKLM\\SYSTEM\\CurrentControlSet\\Services: {text}")
    hive = parts[1].upper()
    if hive not in HIVES:
        raise NotFound(f"unknown hive {parts[1]!r}: offline-fix maps HKLM\\" + ", HKLM\\".join(HIVES))
    return hive, parts[2:]


def resolve_key_path(text: str, current_control_set) -> KeyPath:
    """``current_control_set()`` is called only when the path names CurrentControlSet."""
    hive, rest = parse_key_path(text)
    if hive == "SYSTEM" and rest and rest[0].lower() == "currentcontrolset":
        rest = [current_control_set(), *rest[1:]]
    key = "\\".join(rest)
    display = "HKEY_LOCAL_MACHINE\\" + hive + ("\\" + key if key else "")
    return KeyPath(hive, HIVES[hive], key, display)
