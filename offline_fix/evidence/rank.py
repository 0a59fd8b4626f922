"""Ranking suspects: which driver (or catalog gap, boot setting ...) most likely stops this machine.

The ranking is a sum of points, one line of evidence at a time, so that every score can be read
back as "why": each suspect carries its evidence lines (time, source, text, points).

Driver points, for each independent piece of evidence that names the driver (by service name, or
by the file name of its image):

====================  ======  =====  ==========================================================
kind                  points  alone  evidence
====================  ======  =====  ==========================================================
crash-dump              50    yes    a kernel dump's faulting address lies in its image (small dump)
file-zero               35    yes    its file is empty or every byte is zero
code-integrity          30    yes    CodeIntegrity 3001/3002/3004/3023/3033/3077 names its file
file-missing            25    yes    its file is missing, yet it loads (Start 0-2 or a present device)
load-failure            20    yes    SCM 7000/7026, the dependency of 7001, Kernel-PnP 219 name it
unsigned                20    yes    drivers verify: unsigned, hash-mismatch or not-a-pe
recent-change           15    yes    installed (SCM 7045) or its key written in the N days before
                                     the first crash (keys written in a mass write do not count)
catalog-missing         10    yes    signed only by a catalog missing from CatRoot
pending-rename          10    no     PendingFileRenameOperations replaces or deletes its file
boot-filter             10    no     an upper/lower filter of a boot-critical class or device
                                     (DiskDrive, Volume, SCSIAdapter, HDC); 20 when a crash is a
                                     boot failure (0x7B, 0x5A, 0x69, 0x6B, 0xED)
third-party-boot        10    no     not an inbox driver (not in the inbox list, not signed by
                                     "Microsoft Windows") and starts at boot or system (Start 0/1);
                                     20 when a crash is a boot failure
====================  ======  =====  ==========================================================

A repeat of the same kind (three dumps naming one module, 7026 at every boot) adds a quarter of
the kind's points per repeat, for at most four repeats: repeats confirm, but they are not
independent. A driver becomes a suspect only when at least one "alone" kind names it; the context
kinds (filter, third-party, pending rename) only add to a suspect, so a healthy disk with an
antivirus filter is not reported.

Evidence shared by most drivers says nothing about any one of them: when more than half of the
verified drivers (and at least ten) are unsigned, or catalog-missing, or more than half of the
drivers that load have a missing (or a zero-filled) file, that evidence is not counted per driver;
it becomes a finding (catalog-missing feeds the catalogs suspect instead). The same holds for
registry keys written in one mass write (evidence/registry.py).

Other suspects:
- catalogs (CatRoot missing package catalogs): a suspect when the gap is large (at least 50, or a
  tenth of servicing\\Packages), when CodeIntegrity reports catalog failures (3010, 25 points) or
  driver hash failures (3004/3033, 20 points), or when CatRoot holds empty, zero-filled or
  unparsable catalogs (20 points); a large gap is 30 points, a small one 10, drivers signed only
  by missing catalogs 15. Fix: ``offline-fix catroot restore TARGET``.
- boot config: BootExecute entries other than ``autocheck autochk *`` (15), any SetupExecute
  entry (10), pending renames of driver files (10).
- crash dumps disabled: CrashDumpEnabled=0, or no paging file and no dedicated dump file (5);
  fix: ``offline-fix crashdump enable TARGET``.

"The first crash" (the anchor of "changed before"): the earliest crash (dump, BugCheck 1001,
Kernel-Power 41 with a bug check) within 30 days before the latest one, so that a crash years
earlier in a long log does not move the window.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import PureWindowsPath

from offline_fix.evidence import bugchecks
from offline_fix.evidence.timeline import CRASH, INFO, WARNING, Finding, Timeline, iso
from offline_fix.hive.reader import fold_name

# kind: (points, can make a suspect alone)
KINDS: dict[str, tuple[int, bool]] = {
    "crash-dump": (50, True),
    "file-zero": (35, True),
    "code-integrity": (30, True),
    "file-missing": (25, True),
    "load-failure": (20, True),
    "unsigned": (20, True),
    "recent-change": (15, True),
    "catalog-missing": (10, True),
    "pending-rename": (10, False),
    "boot-filter": (10, False),
    "third-party-boot": (10, False),
    # non-driver suspects
    "catalog-gap": (30, True),
    "catalog-gap-small": (10, False),
    "catalog-failure": (25, True),
    "hash-failure": (20, True),
    "catalog-damaged": (20, True),
    "drivers-catalog-missing": (15, False),
    "boot-execute": (15, True),
    "setup-execute": (10, True),
    "pending-driver-rename": (10, True),
    "dumps-disabled": (5, True),
}
REPEAT_SHARE = 0.25
MAX_REPEATS = 4
BOOT_CONTEXT_FACTOR = 2
BOOT_FAILURES = frozenset((0x7B, 0x5A, 0x69, 0x6B, 0xED))
CRASH_PERIOD_DAYS = 30
MASS_SHARE = 0.5
MASS_MIN = 10
LARGE_GAP = 50
LARGE_GAP_SHARE = 0.1

DRIVER, SERVICE, CATALOGS, BOOT_CONFIG, DUMPS_DISABLED = "driver", "service", "catalogs", "boot config", "crash dumps disabled"

CI_FILE_EVENTS = frozenset((3001, 3002, 3004, 3023, 3033, 3077))
CI_HASH_EVENTS = frozenset((3004, 3033))
LOAD_FAILURE_EVENTS = frozenset((7000, 7001, 7026, 219))
SCM_NOT_A_FAILURE = frozenset((1058,))  # ERROR_SERVICE_DISABLED: asked to start a disabled service
UNSIGNED_VERDICTS = frozenset(("unsigned", "hash-mismatch", "not-a-pe"))
KERNEL_IMAGES = frozenset(("ntoskrnl.exe", "ntkrnlmp.exe", "ntkrnlpa.exe", "ntkrpamp.exe", "hal.dll", "halmacpi.dll",
                           "halacpi.dll"))
# Device classes whose filters sit in the path to the system disk (devguid.h).
BOOT_CLASSES = {
    "{4d36e967-e325-11ce-bfc1-08002be10318}": "DiskDrive",
    "{71a27cdd-812a-11d0-bec7-08002be2092f}": "Volume",
    "{4d36e97b-e325-11ce-bfc1-08002be10318}": "SCSIAdapter",
    "{4d36e96a-e325-11ce-bfc1-08002be10318}": "HDC",
}
# Boot- and system-start drivers that ship with Windows (Windows 7 to 11, Server 2008 R2 to 2022),
# as `sc query type= driver` lists them on default installs; lowercase. Any other boot- or
# system-start driver is third-party unless its file is signed by "Microsoft Windows".
INBOX_DRIVERS = frozenset("""
1394ohci 3ware acpi acpiex acpipagr acpitime adp80xx afd afunix ahcache amdk8 amdppm amdsata amdsbs arcsas
atapi b06bdrv basicdisplay basicrender bam beep bindflt bowser bttflt cdfs cdrom cht4iscsi cht4vbd cimfs
cldflt clfs cmbatt cng compositebus condrv csc dam dfsc disk dxgkrnl ebdrv ehstorclass ehstortcgdrv
errdev exfat fastfat fdc filecrypt fileinfo filetrace flpydisk fltmgr fs_rec fvevol gencounter gpuenergydrv
hdaudbus hidusb hpsamd http hvservice hvsocketcontrol hwpolicy hyperkbd hypervideo iastorav iastorv
intelide intelpep intelppm iorate isapnp kbdclass kbdhid kdnic ksecdd ksecpkg ksthunk lsi_sas lsi_sas2i
lsi_sas3i lsi_sss luafv megasas megasas2i megasas35i megasr mlx4_bus mmcss monitor mountmgr mouclass mouhid
mpsdrv mrxdav mrxsmb mrxsmb10 mrxsmb20 msisadrv mslldp msquic mssecflt mssmbios mup mvumis ndis
ndisvirtualbus ndu netbios netbt netvsc npfs npsvctrig nsiproxy ntfs null nvraid nvstor partmgr pci pciide
pcmcia pcw pdc peauth percsas2i percsas3i processor psched ramdisk rasacd rdbss rdpbus rdyboost refs
refsv1 sacdrv sdbus sdstor serenum sermouse sgrmagent sisraid2 sisraid4 smbdirect spaceport spaceparser
srv srv2 srvnet stexstor storahci storflt stornvme storqosflt storufs storvsc swenum tcpip tcpip6 tcpipreg
tdx tpm tunnel uaspstor ucx01000 udfs uefi umbus usbccgp usbehci usbhub usbhub3 usbohci usbstor usbuhci
usbxhci vdrvroot verifierext vhdmp vmbus vmgid volmgr volmgrx volsnap volume vpci vsmraid vstxraid wacompen
wcifs wdboot wdf01000 wdfilter wdnisdrv wfplwfs wimmount windowstrustedrt windowstrustedrtproxy wof
wtd ws2ifsl xboxgip mpssvc ndisimplatform vwififlt wanarp wanarpv6 msgpiowin32 gpiostb iastora
""".split())


def quote(text: str) -> str:
    return shlex.quote(text)


# -- results -------------------------------------------------------------------------------------
@dataclass
class EvidenceLine:
    kind: str
    source: str
    text: str
    time: datetime | None = None
    points: int = 0

    def to_dict(self) -> dict:
        return {"time": iso(self.time), "source": self.source, "text": self.text, "kind": self.kind,
                "points": self.points}


@dataclass
class Suspect:
    name: str
    kind: str  # driver, service, catalogs, boot config, crash dumps disabled
    evidence: list[EvidenceLine] = field(default_factory=list)
    fix: list[str] = field(default_factory=list)
    cannot_tell: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    @property
    def score(self) -> int:
        return sum(e.points for e in self.evidence)

    @property
    def qualifies(self) -> bool:
        return any(KINDS[e.kind][1] for e in self.evidence)

    def add(self, kind: str, source: str, text: str, time: datetime | None = None, *, factor: int = 1) -> None:
        """Add a line; its points: the kind's full points the first time, a quarter per repeat."""
        weight = KINDS[kind][0] * factor
        seen = sum(1 for e in self.evidence if e.kind == kind)
        points = weight if seen == 0 else (round(weight * REPEAT_SHARE) if seen <= MAX_REPEATS else 0)
        self.evidence.append(EvidenceLine(kind, source, text, time, points))

    def to_dict(self, rank: int | None = None) -> dict:
        d = {"name": self.name, "kind": self.kind, "score": self.score,
             "evidence": [e.to_dict() for e in sorted(self.evidence, key=lambda e: -e.points)],
             "fix": list(self.fix), "cannot_tell": list(self.cannot_tell), "details": self.details}
        if rank is not None:
            d = {"rank": rank} | d
        return d


@dataclass
class Crash:
    time: datetime | None
    source: str
    bugcheck: bugchecks.BugCheck
    module: str | None = None

    def to_dict(self) -> dict:
        return {"time": iso(self.time), "source": self.source, "bugcheck": self.bugcheck.to_dict(),
                "label": self.bugcheck.label, "module": self.module}


@dataclass
class Evidence:
    """Everything diagnose gathered, as the lower layers return it."""

    target: str
    install: int | None  # as given on the command line (for the fix commands)
    table: object  # offline_fix.windows.services.ServiceTable (drivers, files probed)
    dumps: object  # offline_fix.evidence.dumps.DumpSet
    logs: object  # offline_fix.evidence.eventlogs.LogSet
    registry: object  # offline_fix.evidence.registry.RegistryEvidence
    verdicts: dict = field(default_factory=dict)  # folded service name -> signing.verdict.DriverVerdict
    catalogs: object = None  # offline_fix.windows.catroot.Inventory, or None
    services: dict = field(default_factory=dict)  # folded name -> (name, type, start) of every service
    findings: list[Finding] = field(default_factory=list)
    cannot_tell: list[str] = field(default_factory=list)


@dataclass
class Diagnosis:
    target: str
    suspects: list[Suspect]
    crashes: list[Crash]
    first_crash: datetime | None
    timeline: Timeline
    findings: list[Finding]
    cannot_tell: list[str]

    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "suspects": [s.to_dict(i + 1) for i, s in enumerate(self.suspects)],
            "crashes": [c.to_dict() for c in self.crashes],
            "first_crash": iso(self.first_crash),
            "timeline": self.timeline.to_dict(),
            "findings": [f.to_dict() for f in self.findings],
            "cannot_tell": list(self.cannot_tell),
        }


# -- crashes -------------------------------------------------------------------------------------
def crashes_of(dumps, logs) -> list[Crash]:
    out = []
    for d in dumps.kernel_dumps:
        out.append(Crash(d.system_time, f"dump {PureWindowsPath(d.path).name}", d.bugcheck, d.faulting_module))
    for e in logs.events:
        if e.kind == CRASH and e.bugcheck is not None:
            out.append(Crash(e.time, f"{e.provider} {e.event_id}", bugchecks.lookup(e.bugcheck)))
    out.sort(key=lambda c: (c.time is None, c.time or datetime.min))
    return out


def first_crash(crashes: list[Crash]) -> datetime | None:
    """The earliest crash within CRASH_PERIOD_DAYS before the latest one (None: no dated crash)."""
    dated = [c.time for c in crashes if c.time is not None]
    if not dated:
        return None
    latest = max(dated)
    return min(t for t in dated if t >= latest - timedelta(days=CRASH_PERIOD_DAYS))


# -- the ranking ---------------------------------------------------------------------------------
class _Ranker:
    def __init__(self, ev: Evidence) -> None:
        self.ev = ev
        self.table = ev.table
        self.suspects: dict[str, Suspect] = {}
        self.findings: list[Finding] = []
        self.cannot_tell: list[str] = []
        self.crashes = crashes_of(ev.dumps, ev.logs)
        self.anchor = getattr(ev.registry, "anchor", None) or first_crash(self.crashes)  # the registry window's
        self.boot_failure = next((c for c in self.crashes if (c.bugcheck.code & ~0x10000000) in BOOT_FAILURES), None)
        self.by_name = {fold_name(s.name): s for s in self.table.services}
        self.by_file: dict[str, object] = {}
        for s in self.table.services:
            for path in (s.file.path if s.file else None, s.image.resolved if s.image else None):
                if path:
                    self.by_file.setdefault(fold_name(PureWindowsPath(path).name), s)
            self.by_file.setdefault(fold_name(f"{s.name}.sys"), s)
        self.install_arg = f" --install {ev.install}" if ev.install else ""

    # naming ------------------------------------------------------------------
    def _service_for(self, name: str, *, is_file: bool):
        folded = fold_name(PureWindowsPath(name).name if is_file else name)
        return (self.by_file if is_file else self.by_name).get(folded) or self.by_name.get(folded)

    def suspect(self, name: str, *, is_file: bool = False) -> Suspect:
        """The suspect for a driver/service named by an event or a dump (created on first use)."""
        svc = self._service_for(name, is_file=is_file)
        if svc is not None:
            key = f"driver:{fold_name(svc.name)}"
            if key not in self.suspects:
                self.suspects[key] = Suspect(svc.name, DRIVER, details={"service": svc.name})
            return self.suspects[key]
        shown = PureWindowsPath(name).name if is_file else name
        other = self.ev.services.get(fold_name(shown)) or (
            self.ev.services.get(fold_name(PureWindowsPath(shown).stem)) if is_file else None)
        key = f"other:{fold_name(other[0] if other else shown)}"
        if key not in self.suspects:
            if other is not None:
                self.suspects[key] = Suspect(other[0], SERVICE, details={"service": other[0], "type": other[1],
                                                                          "start": other[2]})
            else:
                self.suspects[key] = Suspect(shown, DRIVER, details={"service": None})
        return self.suspects[key]

    # evidence ----------------------------------------------------------------
    def dumps(self) -> None:
        for d in self.ev.dumps.kernel_dumps:
            if not d.faulting_module:
                continue
            where = f"dump {PureWindowsPath(d.path).name}"
            text = (f"bug check {d.bugcheck.label}: the faulting address {d.fault_address:#x} is in "
                    f"{d.faulting_module} (+{d.fault_offset:#x})")
            if d.faulting_module.lower() in KERNEL_IMAGES:
                self.cannot_tell.append(f"{where}: the faulting address is in the kernel ({d.faulting_module}); "
                                        "the kernel is usually the victim of a driver or of a hardware fault, which a "
                                        "dump header cannot tell")
                continue
            self.suspect(d.faulting_module, is_file=True).add("crash-dump", where, text, d.system_time)

    def events(self) -> None:
        for e in self.ev.logs.events:
            source = f"{PureWindowsPath(e.source).name or 'evtx'} record {e.record_id}"
            if e.event_id in LOAD_FAILURE_EVENTS and e.kind == "driver-failure":
                if e.event_id in (7000, 7001) and e.status in SCM_NOT_A_FAILURE:
                    continue
                names = e.names[1:2] if e.event_id == 7001 else e.names
                for name in names:
                    if name:
                        self.suspect(name).add("load-failure", source, e.summary, e.time)
            elif e.event_id in CI_FILE_EVENTS and e.names:
                self.suspect(e.names[0], is_file=True).add("code-integrity", source, e.summary, e.time)

    def files(self) -> None:
        found: dict[str, list] = {"file-missing": [], "file-zero": []}
        for svc in self.table.services:
            for problem in svc.problems():
                found["file-missing" if problem == "file missing" else "file-zero"].append((svc, problem))
        loading = sum(1 for s in self.table.services if s.file is not None and loads(s))
        for kind, items in found.items():
            if self._mass(kind, len(items), loading, "drivers that load"):
                continue
            for svc, problem in items:
                path = svc.file.path if svc.file else None
                self.suspect(svc.name).add(kind, "driver file", f"{path or svc.name}: {problem} "
                                           f"(Start={svc.start_name}, ImagePath {svc.image.stored if svc.image else '-'})")

    def _mass(self, kind: str, count: int, total: int, of_what: str, note: str = "") -> bool:
        """True (and a finding) when ``count`` of ``total`` is most of them: evidence shared by most
        drivers names none of them."""
        if count < MASS_MIN or count <= MASS_SHARE * total:
            return False
        self.findings.append(Finding(WARNING, f"mass-{kind}",
                                     f"{count:,} of {total:,} {of_what} are {kind.replace('file-', 'file ')}: evidence "
                                     f"shared by most drivers names none of them, so it is not counted per driver{note}"))
        return True

    def signatures(self) -> None:
        verdicts = self.ev.verdicts
        if not verdicts:
            return
        groups = {"unsigned": [], "catalog-missing": []}
        for name, v in verdicts.items():
            if v.verdict in UNSIGNED_VERDICTS:
                groups["unsigned"].append((name, v))
            elif v.verdict == "catalog-missing":
                groups["catalog-missing"].append((name, v))
        total = len(verdicts)
        self.mass_catalog_missing = 0
        for kind, items in groups.items():
            note = " (the catalogs suspect counts it)" if kind == "catalog-missing" else ""
            if self._mass(kind, len(items), total, "verified drivers", note):
                if kind == "catalog-missing":
                    self.mass_catalog_missing = len(items)
                continue
            for name, v in items:
                svc = self.by_name.get(name)
                label = svc.name if svc else name
                self.suspect(label).add(kind, "drivers verify", f"{v.verdict}: {v.reason}")

    def changes(self) -> None:
        reg = self.ev.registry
        for c in reg.changed:
            self.suspect(c.name).add("recent-change", c.source,
                                     f"service key {c.key} last written {iso(c.time)}, "
                                     f"{_before(c.time, self.anchor)} the first crash", c.time)
        for c in reg.installed:
            if c.in_window:
                self.suspect(c.name).add("recent-change", c.source,
                                         f"driver installed: {c.name} {c.image or ''} ({_before(c.time, self.anchor)} "
                                         "the first crash)".replace("  ", " "), c.time)
        for m in reg.mass_writes:
            self.findings.append(Finding(INFO, "registry-mass-write",
                                         f"{m.count} service keys were written in the minute of {iso(m.time)} (a boot or "
                                         f"an installer, e.g. {', '.join(m.sample[:4])}): not counted against any one driver"))
        for r in reg.renames:
            if r.service:  # context only: it adds to a driver named by other evidence
                self.suspect(r.service).add("pending-rename", f"registry {r.value}", f"pending at the next boot: {r.text}")

    def context(self) -> None:
        """Context points (filters, third-party boot drivers) for drivers already named."""
        factor = BOOT_CONTEXT_FACTOR if self.boot_failure else 1
        why = f" (doubled: {self.boot_failure.bugcheck.label} is a boot failure)" if self.boot_failure else ""
        for key, s in list(self.suspects.items()):
            svc = self.by_name.get(fold_name(s.name)) if s.kind == DRIVER else None
            if svc is None:
                continue
            for f in svc.filters:
                cls = BOOT_CLASSES.get((f.class_guid or "").lower())
                if cls:
                    where = f"device {f.device}" if f.device else f"class {cls}"
                    s.add("boot-filter", "registry", f"{f.value} of {where} ({f.key}){why}", factor=factor)
            start = effective_start(svc)
            if start in (0, 1) and not self._inbox(svc):
                s.add("third-party-boot", "registry", f"third-party driver (not an inbox name, not signed by Microsoft "
                      f"Windows) that starts at {'boot' if start == 0 else 'system'} (Start={start}){why}", factor=factor)

    def _inbox(self, svc) -> bool:
        v = self.ev.verdicts.get(fold_name(svc.name))
        signer = (v.signer or "") if v is not None and v.ok else ""
        if any(part.strip() == "CN=Microsoft Windows" for part in signer.split(",")):
            return True
        return svc.name.lower() in INBOX_DRIVERS

    # non-driver suspects --------------------------------------------------------
    def catalogs(self) -> None:
        inv = self.ev.catalogs
        s = Suspect("CatRoot catalogs", CATALOGS)
        ci = [e for e in self.ev.logs.events if e.event_id == 3010]
        hashes = [e for e in self.ev.logs.events if e.event_id in CI_HASH_EVENTS]
        for e in ci:
            s.add("catalog-failure", f"{PureWindowsPath(e.source).name} record {e.record_id}", e.summary, e.time)
        for e in hashes:
            s.add("hash-failure", f"{PureWindowsPath(e.source).name} record {e.record_id}", e.summary, e.time)
        packages_present = False
        if inv is not None:
            missing = inv.missing
            packages = len(inv.packages.files)
            packages_present = inv.packages.present and packages > 0
            s.details = {"catroot": inv.catroot.path, "catroot_count": len(inv.catroot.files),
                         "packages_count": packages, "missing_count": len(missing),
                         "missing_sample": [f.name for f in missing[:20]]}
            if missing:
                large = len(missing) >= LARGE_GAP or len(missing) >= LARGE_GAP_SHARE * max(packages, 1)
                s.add("catalog-gap" if large else "catalog-gap-small", "catroot check",
                      f"CatRoot\\{{F750E6C3-...}} is missing {len(missing):,} of the {packages:,} catalogs in "
                      f"servicing\\Packages (e.g. {', '.join(f.name for f in missing[:3])})")
            if not inv.catroot.present:
                s.add("catalog-gap", "catroot check", f"{inv.catroot.path} does not exist")
            bad = inv.catroot.bad()
            if bad:
                s.add("catalog-damaged", "catroot check",
                      f"{len(bad):,} catalogs in CatRoot are {' or '.join(sorted({f.status for f in bad}))} "
                      f"(e.g. {bad[0].name})")
        if self.mass_catalog_missing:
            s.add("drivers-catalog-missing", "drivers verify",
                  f"{self.mass_catalog_missing:,} drivers are signed only by catalogs missing from CatRoot")
        else:
            listed = [v for v in self.ev.verdicts.values() if v.verdict == "catalog-missing"]
            if listed:
                s.add("drivers-catalog-missing", "drivers verify",
                      f"{len(listed):,} drivers are signed only by catalogs missing from CatRoot "
                      f"(e.g. {PureWindowsPath(listed[0].name).name})")
        if not s.qualifies:
            return
        if packages_present:
            overwrite = " --overwrite" if inv is not None and inv.catroot.bad() else ""
            s.fix.append(f"offline-fix catroot restore {quote(self.ev.target)}{self.install_arg}{overwrite}")
        else:
            s.cannot_tell.append("servicing\\Packages holds no catalogs on this disk: `catroot restore` has nothing to "
                                 "copy from; copy the catalogs from a healthy machine of the same build")
        s.cannot_tell.append("which catalogs Code Integrity needed at boot: only the events name them; a gap "
                             "can be harmless when the drivers that load are embedded-signed")
        self.suspects["catalogs"] = s

    def boot_config(self) -> None:
        reg = self.ev.registry
        s = Suspect("Session Manager boot-time operations", BOOT_CONFIG)
        session = f"HKLM\\SYSTEM\\CurrentControlSet\\Control\\Session Manager"
        target = quote(self.ev.target)
        for name, extra in reg.unusual_execute().items():
            kind = "boot-execute" if name == "BootExecute" else "setup-execute"
            for entry in extra:
                s.add(kind, f"registry {name}", f"{name} runs {entry!r} before Windows starts")
            if name == "BootExecute":
                s.fix.append(f"offline-fix reg add {target} {quote(session)} /v BootExecute /t REG_MULTI_SZ "
                             f"/d {quote('autocheck autochk *')} /f{self.install_arg}")
            else:
                s.fix.append(f"offline-fix reg delete {target} {quote(session)} /v {name} /f{self.install_arg}")
        drivers = [r for r in reg.renames if r.service]
        for r in drivers:
            s.add("pending-driver-rename", f"registry {r.value}", f"pending at the next boot: {r.text} ({r.service})")
        if drivers:
            for value in sorted({r.value for r in drivers}):
                s.fix.append(f"offline-fix reg delete {target} {quote(session)} /v {value} /f{self.install_arg}")
        if not s.qualifies:
            return
        s.cannot_tell.append("whether these operations are a half-finished update or something foreign: deleting a "
                             "pending rename abandons that update's file change")
        self.suspects["boot-config"] = s

    def dumps_disabled(self) -> None:
        cc = self.ev.registry.crash_control
        problems = cc.problems()
        if not problems:
            return
        s = Suspect("crash dumps disabled", DUMPS_DISABLED, details=cc.to_dict())
        for p in problems:
            s.add("dumps-disabled", f"registry {self.ev.registry.control_set}\\Control\\CrashControl", p)
        s.fix.append(f"offline-fix crashdump enable {quote(self.ev.target)}{self.install_arg}")
        s.cannot_tell.append("not a cause of the crashes: without a dump the next crash cannot name its driver")
        self.suspects["dumps"] = s

    # fixes -------------------------------------------------------------------
    def driver_fixes(self, s: Suspect) -> None:
        target = quote(self.ev.target)
        svc = self.by_name.get(fold_name(s.name)) if s.kind == DRIVER else None
        if any(e.kind == "catalog-missing" for e in s.evidence):
            s.fix.append(f"offline-fix catroot restore {target}{self.install_arg}")
        if svc is not None:
            s.details.update({"start": svc.start, "start_name": svc.start_name, "group": svc.group,
                              "image_path": svc.image.stored if svc.image else None,
                              "file": svc.file.path if svc.file else None,
                              "boot_critical": svc.boot_critical, "key": svc.key})
            if effective_start(svc) == 4:
                s.cannot_tell.append("it is already disabled (Start=4): if the machine still crashes, look at the "
                                     "next suspect")
            elif svc.boot_critical:
                s.cannot_tell.append(f"it is boot-critical ({svc.boot_critical}): disabling it stops Windows reaching "
                                     "its disk, so no disable command is offered; replace its file from a healthy "
                                     "machine of the same build")
            else:
                s.fix.append(f"offline-fix drivers disable {target} {quote(svc.name)}{self.install_arg}")
        elif s.kind == SERVICE:
            s.fix.append(f"offline-fix drivers disable {target} {quote(s.name)}{self.install_arg}")
        else:
            s.cannot_tell.append("no service of this name or file is in the control set that boots: it may have "
                                 "been removed since the evidence was written")
        kinds = {e.kind for e in s.evidence}
        if "crash-dump" in kinds:
            s.cannot_tell.append("a dump header names the module holding the faulting address, not whether that "
                                 "driver caused the fault or was handed damaged data by another")
        if "recent-change" in kinds:
            s.cannot_tell.append("a key's last-write time says when it changed, not what changed")
        if "unsigned" in kinds:
            s.cannot_tell.append("signatures were checked against this disk's catalogs and Microsoft's roots; a "
                                 "machine in test-signing mode loads drivers this check calls unsigned")

    def run(self) -> Diagnosis:
        self.mass_catalog_missing = 0
        self.dumps()
        self.events()
        self.files()
        self.signatures()
        self.changes()
        self.context()
        self.suspects = {k: s for k, s in self.suspects.items() if s.qualifies}
        for s in self.suspects.values():
            self.driver_fixes(s)
        self.catalogs()
        self.boot_config()
        self.dumps_disabled()
        ranked = sorted(self.suspects.values(), key=lambda s: (-s.score, s.kind != DRIVER, s.name.lower()))
        self._global_limits()
        timeline = Timeline.from_evidence(self.ev.dumps.dumps, self.ev.logs.events, self.ev.registry.timeline_entries())
        findings = list(self.ev.findings) + list(self.ev.dumps.findings) + [
            f for d in self.ev.dumps.dumps for f in d.findings] + self.ev.logs.all_findings + self.findings
        return Diagnosis(self.ev.target, ranked, self.crashes, self.anchor, timeline, findings,
                         _unique(self.ev.cannot_tell + self.cannot_tell))

    def _global_limits(self) -> None:
        kernel = self.ev.dumps.kernel_dumps
        if not kernel:
            self.cannot_tell.append("no kernel crash dump on the disk: no dump names a faulting driver")
        for d in kernel:
            for note in d.cannot_tell:
                self.cannot_tell.append(f"dump {PureWindowsPath(d.path).name}: {note}")
        if self.anchor is None:
            self.cannot_tell.append("no dated crash (dump, BugCheck 1001 or Kernel-Power 41 with a bug check): "
                                    "driver changes cannot be lined up against a first crash")


def loads(svc) -> bool:
    """Windows loads the driver: Start 0-2 (after StartOverride), or a present device binds it."""
    start = effective_start(svc)
    return start is not None and start != 4 and (start <= 2 or any(d.present for d in svc.devices))


def effective_start(svc) -> int | None:
    """Start as Windows applies it: StartOverride values, when present, win over Start."""
    overrides = [v for v in svc.start_override.values() if isinstance(v, int)]
    return min(overrides) if overrides else svc.start


def _before(when: datetime, anchor: datetime | None) -> str:
    if anchor is None:
        return "before"
    delta = anchor - when
    hours = delta.total_seconds() / 3600
    if hours < 1:
        return f"{max(0, int(delta.total_seconds() // 60))} min before"
    if hours < 48:
        return f"{hours:.0f} h before"
    return f"{delta.days} days before"


def _unique(items: list[str]) -> list[str]:
    seen, out = set(), []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def rank(evidence: Evidence) -> Diagnosis:
    """Rank the suspects of ``evidence`` (see the module docstring for the rules)."""
    return _Ranker(evidence).run()
