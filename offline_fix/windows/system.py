"""What the SYSTEM (and SOFTWARE) hive say about an install: control sets, the one that boots,
computer name, Windows version and build.

Select\\Current names the control set Windows boots (Microsoft: "How to determine the control set
used": HKLM\\SYSTEM\\Select, values Current, Default, LastKnownGood, Failed); CurrentControlSet
is not stored in the file, it is that number. Version sources, best first: SOFTWARE's
Microsoft\\Windows NT\\CurrentVersion; SYSTEM's Setup\\Source OS keys (left by upgrades);
Control\\Windows ShutdownStopTimePerfCounterBuildLab; inbox driver versions in Control\\Class.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from offline_fix.errors import NotFound
from offline_fix.hive import Hive
from offline_fix.hive.errors import HiveError

_CONTROL_SET = re.compile(r"^ControlSet(\d{3})$", re.IGNORECASE)
SYSTEM_DEVICES_CLASS = "{4d36e97d-e325-11ce-bfc1-08002be10318}"


@dataclass
class ControlSets:
    present: list[str]
    current: str | None
    select: dict[str, int]
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"present": self.present, "current": self.current, "select": self.select}


def control_sets(hive: Hive) -> ControlSets:
    present = sorted(k.name for k in hive.root.subkeys() if _CONTROL_SET.match(k.name))
    select_key = hive.find_key("Select")
    select = {}
    problems = []
    if select_key is None:
        problems.append("SYSTEM has no Select key")
    else:
        for name in ("Current", "Default", "LastKnownGood", "Failed"):
            value = select_key.get(name)
            if isinstance(value, int):
                select[name] = value
    current = None
    if "Current" in select:
        wanted = f"ControlSet{select['Current']:03d}"
        match = next((name for name in present if name.lower() == wanted.lower()), None)
        if match is None:
            problems.append(f"Select\\Current = {select['Current']} but {wanted} is missing")
        current = match
    elif present:
        problems.append("Select\\Current missing")
    return ControlSets(present, current, select, problems)


def current_control_set(hive: Hive) -> str:
    sets = control_sets(hive)
    if sets.current is None:
        raise NotFound("the control set that boots cannot be determined: " + "; ".join(sets.problems or ["no ControlSet00N keys"]))
    return sets.current


def computer_name(hive: Hive, control_set: str | None) -> str | None:
    if control_set is None:
        return None
    key = hive.find_key(control_set + r"\Control\ComputerName\ComputerName")
    value = key.get("ComputerName") if key is not None else None
    return value if isinstance(value, str) else None


_RELEASES = [
    # (major.minor, minimum build, client name, server name)
    ("5.1", 0, "Windows XP", "Windows XP"),
    ("5.2", 0, "Windows XP x64", "Windows Server 2003"),
    ("6.0", 0, "Windows Vista", "Windows Server 2008"),
    ("6.1", 0, "Windows 7", "Windows Server 2008 R2"),
    ("6.2", 0, "Windows 8", "Windows Server 2012"),
    ("6.3", 0, "Windows 8.1", "Windows Server 2012 R2"),
    ("10.0", 0, "Windows 10", "Windows Server 2016"),
    ("10.0", 17763, "Windows 10", "Windows Server 2019"),
    ("10.0", 20348, "Windows 10", "Windows Server 2022"),
    ("10.0", 22000, "Windows 11", "Windows Server 2022"),
    ("10.0", 26100, "Windows 11", "Windows Server 2025"),
]


def release_name(version: str | None, build: int | None, server: bool) -> str | None:
    if not version:
        return None
    best = None
    for ver, min_build, client, srv in _RELEASES:
        if ver == version and (build or 0) >= min_build:
            best = srv if server else client
    return best


@dataclass
class WindowsVersion:
    product_name: str | None = None
    version: str | None = None  # "10.0"
    build: int | None = None
    ubr: int | None = None
    display_version: str | None = None
    edition: str | None = None
    product_type: str | None = None  # WinNT (client), ServerNT, LanmanNT (domain controller)
    source: str | None = None

    @property
    def is_server(self) -> bool:
        return self.product_type in ("ServerNT", "LanmanNT")

    def name(self) -> str | None:
        return self.product_name or release_name(self.version, self.build, self.is_server)

    def to_dict(self) -> dict:
        return {"name": self.name(), "product_name": self.product_name, "version": self.version,
                "build": self.build, "ubr": self.ubr, "display_version": self.display_version,
                "edition": self.edition, "product_type": self.product_type, "source": self.source}


def _int(value) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _from_current_version(key, source: str) -> WindowsVersion:
    build = _int(key.get("CurrentBuildNumber")) or _int(key.get("CurrentBuild"))
    major, minor = key.get("CurrentMajorVersionNumber"), key.get("CurrentMinorVersionNumber")
    version = f"{major}.{minor}" if isinstance(major, int) and isinstance(minor, int) else key.get("CurrentVersion")
    return WindowsVersion(product_name=key.get("ProductName"), version=version if isinstance(version, str) else None,
                          build=build, ubr=_int(key.get("UBR")),
                          display_version=key.get("DisplayVersion") or key.get("ReleaseId"),
                          edition=key.get("EditionID"), source=source)


def windows_version(system: Hive, control_set: str | None, software: Hive | None = None) -> WindowsVersion:
    found = WindowsVersion()
    if software is not None:
        key = software.find_key(r"Microsoft\Windows NT\CurrentVersion")
        if key is not None:
            found = _from_current_version(key, r"SOFTWARE\Microsoft\Windows NT\CurrentVersion")
    if found.build is None:
        setup = system.find_key("Setup")
        newest = None
        for sub in setup.subkeys() if setup is not None else ():
            if sub.name.lower().startswith("source os") and (newest is None or sub.timestamp > newest.timestamp):
                newest = sub
        if newest is not None:
            found = _from_current_version(newest, rf"SYSTEM\Setup\{newest.name}")
    if found.build is None and control_set:
        key = system.find_key(control_set + r"\Control\Windows")
        lab = key.get("ShutdownStopTimePerfCounterBuildLab") if key is not None else None
        if isinstance(lab, str) and lab.split(".", 1)[0].isdigit():
            found.build = int(lab.split(".", 1)[0])
            found.version = found.version or ("10.0" if found.build >= 10240 else None)
            found.source = rf"SYSTEM\{control_set}\Control\Windows\ShutdownStopTimePerfCounterBuildLab"
    if found.build is None and control_set:
        _version_from_inbox_drivers(system, control_set, found)
    if control_set:
        key = system.find_key(control_set + r"\Control\ProductOptions")
        product_type = key.get("ProductType") if key is not None else None
        found.product_type = product_type if isinstance(product_type, str) else None
    return found


def _version_from_inbox_drivers(system: Hive, control_set: str, found: WindowsVersion) -> None:
    cls = system.find_key(rf"{control_set}\Control\Class\{SYSTEM_DEVICES_CLASS}")
    if cls is None:
        return
    versions = []
    for sub in cls.subkeys():
        provider, version = sub.get("ProviderName"), sub.get("DriverVersion")
        if provider == "Microsoft" and isinstance(version, str):
            parts = version.split(".")
            if len(parts) == 4 and all(p.isdigit() for p in parts):
                versions.append(tuple(int(p) for p in parts))
    if versions:
        major, minor, build, _qfe = max(set(versions), key=versions.count)
        found.version, found.build = f"{major}.{minor}", build
        found.source = rf"SYSTEM\{control_set}\Control\Class\{SYSTEM_DEVICES_CLASS} (inbox driver versions)"


def safe_open_hive(data: bytes) -> tuple[Hive | None, str | None]:
    """Open a hive tolerantly for reporting; (None, reason) when it cannot be opened at all."""
    try:
        return Hive.open(data, tolerant=True), None
    except HiveError as exc:
        return None, str(exc)
