"""Finding the Windows installs on a target, and what each one is.

An install is a volume holding ``Windows\\System32\\config\\SYSTEM``. Installs are numbered from 1
in volume order; later commands pick one with ``--install N``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from offline_fix.errors import NotFound, OfflineFixError, Refused, Unsupported
from offline_fix.hive import Hive
from offline_fix.target import Target, Volume
from offline_fix.target.fs import FileSystem
from offline_fix.windows import system

SYSTEM_HIVE = r"Windows\System32\config\SYSTEM"
SOFTWARE_HIVE = r"Windows\System32\config\SOFTWARE"
MAX_HIVE_SIZE = 512 * 1024 * 1024


@dataclass
class WindowsInstall:
    number: int
    volume: Volume
    fs: FileSystem
    system_hive_path: str
    problems: list[str] = field(default_factory=list)
    _system: Hive | None = None
    _software: Hive | None = None
    _software_read: bool = False

    def system_hive(self) -> Hive:
        if self._system is None:
            self._system = Hive.open(self.fs.read_bytes(self.system_hive_path, MAX_HIVE_SIZE), tolerant=True)
            self._system.path = self.system_hive_path
        return self._system

    def software_hive(self) -> Hive | None:
        if not self._software_read:
            self._software_read = True
            try:
                path = self.fs.resolve(SOFTWARE_HIVE)
                self._software = Hive.open(self.fs.read_bytes(path, MAX_HIVE_SIZE), tolerant=True)
            except NotFound:
                self._software = None
            except OfflineFixError as exc:
                self.problems.append(f"SOFTWARE hive unreadable: {exc}")
        return self._software

    def summary(self) -> dict:
        d = {"number": self.number, "partition": self.volume.index, "volume_label": self.volume.label,
             "system_hive": {"path": self.system_hive_path}}
        try:
            hive = self.system_hive()
        except OfflineFixError as exc:
            d["system_hive"]["error"] = str(exc)
            d["problems"] = self.problems + [f"SYSTEM hive unreadable: {exc}"]
            return d
        bb = hive.base_block
        d["system_hive"].update({
            "dirty": hive.dirty,
            "sequence": [bb.sequence1, bb.sequence2],
            "checksum_ok": bb.checksum_ok,
            "last_written": bb.last_written.isoformat() if bb.last_written else None,
            "size": len(hive.buf),
            "logs": [name for name in self._log_names()],
        })
        sets = system.control_sets(hive)
        d["control_sets"] = sets.present
        d["current_control_set"] = sets.current
        d["select"] = sets.select
        d["computer_name"] = system.computer_name(hive, sets.current)
        version = system.windows_version(hive, sets.current, self.software_hive())
        d["build"] = version.build
        d["version"] = version.to_dict()
        problems = self.problems + sets.problems + [f"SYSTEM hive: {w}" for w in hive.warnings[:20]]
        if hive.dirty:
            problems.append(f"SYSTEM hive is dirty (sequence {bb.sequence1}/{bb.sequence2}): its transaction logs "
                            "hold changes not yet in the file")
        if problems:
            d["problems"] = problems
        return d

    def _log_names(self) -> list[str]:
        folder = self.system_hive_path.rsplit("\\", 1)[0]
        names = []
        try:
            for entry in self.fs.listdir(folder):
                if entry.name.upper() in ("SYSTEM.LOG", "SYSTEM.LOG1", "SYSTEM.LOG2") and entry.size > 0:
                    names.append(entry.name)
        except OfflineFixError:
            pass
        return sorted(names)


def find_installs(target: Target) -> list[WindowsInstall]:
    installs = []
    for volume in target.volumes:
        if not volume.readable:
            continue
        try:
            fs = volume.fs()
            path = fs.resolve(SYSTEM_HIVE)
        except NotFound:
            continue
        except Refused:
            raise  # a link out of the target: say so, never look elsewhere
        except OfflineFixError as exc:
            if volume.error is None:
                target.warnings.append(f"volume {volume.index}: {exc}")
            continue
        installs.append(WindowsInstall(len(installs) + 1, volume, fs, path))
    return installs


def select_install(target: Target, number: int | None) -> WindowsInstall:
    """The install a command works on: the only one, or the one ``--install N`` names."""
    installs = find_installs(target)
    if not installs:
        locked = [v.index for v in target.volumes if v.filesystem == "bitlocker"]
        if locked:
            raise Unsupported(f"no readable Windows install on {target.spec}: partition {locked[0]} is BitLocker-encrypted "
                              "(unlock it first; `offline-fix inspect` says how)")
        raise NotFound(f"no Windows installation found on {target.spec} "
                       f"(looked for {SYSTEM_HIVE} on {len([v for v in target.volumes if v.readable])} readable volume(s))")
    if number is None:
        if len(installs) > 1:
            raise NotFound(f"{target.spec} holds {len(installs)} Windows installs: choose one with --install N "
                           "(`offline-fix inspect` lists them)")
        return installs[0]
    for install in installs:
        if install.number == number:
            return install
    raise NotFound(f"no Windows install number {number} on {target.spec} (there are {len(installs)})")
