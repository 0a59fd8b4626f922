"""The ranking rules of offline_fix/evidence/rank.py, one rule per test. The evidence objects are the
real ones of the lower layers (services, dumps read from headers built at ntiodump.h's offsets by
tests/test_evidence_dumps.py, events, verdicts); the expected points are those the rank.py
docstring documents, so that a change of rule shows up here."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

from test_evidence_dumps import build64

from offline_fix.evidence import rank as R
from offline_fix.evidence.dumps import DumpSet, read_dump
from offline_fix.evidence.eventlogs import Event, LogResult, LogSet
from offline_fix.evidence.registry import CrashControl, RegistryEvidence, ServiceChange
from offline_fix.signing.verdict import DriverVerdict
from offline_fix.windows.catroot import CatalogFile, Folder, Inventory
from offline_fix.windows.services import DriverFile, FilterList, ImagePath, Service, ServiceTable

T0 = datetime(2024, 7, 19, 4, 0, tzinfo=timezone.utc)
DISKDRIVE = "{4d36e967-e325-11ce-bfc1-08002be10318}"
TARGET = "/dev/sdc"


def svc(name, start=3, *, type_=1, exists=True, zero=False, filters=(), critical=None, written=None, override=None):
    path = f"Windows\\System32\\drivers\\{name}.sys"
    return Service(name=name, key=f"ControlSet001\\Services\\{name}", type=type_, start=start,
                   image=ImagePath(f"System32\\drivers\\{name}.sys", path, "relative"),
                   file=DriverFile(path, exists, (4096 if exists else None), (zero if exists else None)),
                   filters=list(filters), boot_critical=critical, last_written=written,
                   start_override=override or {})


def diskdrive_filter(name):
    return FilterList("ControlSet001", f"ControlSet001\\Control\\Class\\{DISKDRIVE}", "UpperFilters",
                      ["partmgr", name], 7, "class", DISKDRIVE, "DiskDrive")


def event(event_id, kind, names=(), *, minutes=0, status=None, bugcheck=None, provider="Service Control Manager"):
    return Event(T0 + timedelta(minutes=minutes), event_id, provider, "System", 100 + minutes, kind,
                 f"event {event_id} {' '.join(names)}", names=tuple(names), status=status, bugcheck=bugcheck,
                 source="C:\\x\\System.evtx")


def evidence(services, *, events=(), dumps=(), verdicts=None, registry=None, catalogs=None, others=None):
    table = ServiceTable("ControlSet001", "Windows", "C:", list(services), [], [])
    logs = LogSet([LogResult("System.evtx", events=list(events))])
    dump_set = DumpSet([read_dump(io.BytesIO(d), f"Windows\\Minidump\\{i}.dmp") for i, d in enumerate(dumps)])
    reg = registry or RegistryEvidence("ControlSet001", None, 7, crash_control=CrashControl(True, 7, 1))
    return R.Evidence(TARGET, None, table, dump_set, logs, reg, verdicts or {}, catalogs, others or {})


def points(suspect, kind):
    return sum(e.points for e in suspect.evidence if e.kind == kind)


def by_name(diagnosis):
    return {s.name: s for s in diagnosis.suspects}


def small_dump_in(module, base=0xFFFFF80012340000):
    modules = [("\\SystemRoot\\system32\\ntoskrnl.exe", 0xFFFFF80000000000, 0xA00000),
               (f"\\SystemRoot\\System32\\drivers\\{module}", base, 0x20000)]
    return build64(0x7E, (0xC0000005, base + 0x1234, 0, 0), dump_type=4, modules=modules)


def test_dump_named_driver_ranks_first_with_its_context():
    d = R.rank(evidence([svc("haspnt", 0, filters=[diskdrive_filter("haspnt")]), svc("other", 2)],
                        events=[event(7000, "driver-failure", ["other"], status=2)],
                        dumps=[small_dump_in("HASPNT.sys")]))
    first, second = d.suspects
    assert (first.name, second.name) == ("haspnt", "other")
    # crash-dump 50 + DiskDrive filter 10 + third-party boot-start 10; load-failure 20
    assert (first.score, second.score) == (70, 20)
    assert points(first, "crash-dump") == 50 and points(first, "boot-filter") == 10
    assert first.fix == [f"offline-fix drivers disable {TARGET} haspnt"]
    assert d.first_crash == datetime(2024, 3, 5, 6, 7, 8, tzinfo=timezone.utc)  # the dump's SystemTime


def test_repeats_add_a_quarter_up_to_four_times():
    events = [event(7026, "driver-failure", ["dam"], minutes=i) for i in range(7)]
    (s,) = R.rank(evidence([svc("dam", 1)], events=events)).suspects
    assert points(s, "load-failure") == 20 + 4 * 5  # the 6th and 7th add nothing
    assert [e.points for e in s.evidence if e.kind == "load-failure"] == [20, 5, 5, 5, 5, 0, 0]


def test_context_alone_makes_no_suspect():
    # a third-party boot-start filter of DiskDrive on a healthy disk (an antivirus, say)
    d = R.rank(evidence([svc("avfilter", 0, filters=[diskdrive_filter("avfilter")])]))
    assert d.suspects == []


def test_boot_failure_doubles_filter_and_third_party_points():
    crash = event(41, "crash", bugcheck=0x7B, provider="Microsoft-Windows-Kernel-Power")
    d = R.rank(evidence([svc("acmedisk", 0, filters=[diskdrive_filter("acmedisk")])],
                        events=[crash, event(7026, "driver-failure", ["acmedisk"], minutes=1)]))
    (s,) = d.suspects
    assert (points(s, "boot-filter"), points(s, "third-party-boot"), s.score) == (20, 20, 60)


def test_7001_blames_the_dependency_and_1058_is_not_a_failure():
    events = [event(7001, "driver-failure", ["LanmanServer", "srv2"], status=1068),
              event(7000, "driver-failure", ["Spooler"], status=1058, minutes=1)]
    d = R.rank(evidence([svc("srv2", 3)], events=events, others={"lanmanserver": ("LanmanServer", 0x20, 2)}))
    assert [s.name for s in d.suspects] == ["srv2"]


def test_code_integrity_names_the_file_by_path():
    ci = Event(T0, 3004, "Microsoft-Windows-CodeIntegrity", "Microsoft-Windows-CodeIntegrity/Operational", 5,
               "ci-failure", "file hash of ... could not be found", names=("filecrypt.sys",),
               path="\\Device\\HarddiskVolume2\\Windows\\System32\\drivers\\filecrypt.sys", source="CI.evtx")
    d = R.rank(evidence([svc("FileCrypt", 1)], events=[ci]))
    names = by_name(d)
    assert points(names["FileCrypt"], "code-integrity") == 30
    assert "CatRoot catalogs" in names  # 3004 is a hash failure: the catalogs suspect exists too
    assert points(names["CatRoot catalogs"], "hash-failure") == 20


def test_file_problems():
    d = R.rank(evidence([svc("gone", 1, exists=False), svc("zero", 3, zero=True), svc("manual", 3, exists=False)]))
    names = by_name(d)
    assert points(names["gone"], "file-missing") == 25
    assert points(names["zero"], "file-zero") == 35
    assert "manual" not in names  # a manual-start driver with no device never loads: its missing file is harmless


def test_evidence_shared_by_most_drivers_is_not_counted():
    services = [svc(f"d{i}", 2) for i in range(12)]
    verdicts = {f"d{i}": DriverVerdict(f"d{i}.sys", "unsigned", "no signature") for i in range(12)}
    d = R.rank(evidence(services, verdicts=verdicts))
    assert d.suspects == []
    assert [f.code for f in d.findings] == ["mass-unsigned"]
    few = {f"d{i}": DriverVerdict(f"d{i}.sys", "unsigned", "no signature") for i in range(2)}
    d = R.rank(evidence(services, verdicts=few))
    assert sorted(s.name for s in d.suspects) == ["d0", "d1"]


def test_recent_change_counts_and_window_anchor():
    anchor = T0
    reg = RegistryEvidence("ControlSet001", anchor, 7, changed=[
        ServiceChange("newdrv", anchor - timedelta(hours=30), "key last-write", "ControlSet001\\Services\\newdrv")],
        installed=[ServiceChange("newdrv", anchor - timedelta(days=2), "SCM 7045 record 9", in_window=True),
                   ServiceChange("olddrv", anchor - timedelta(days=40), "SCM 7045 record 3", in_window=False)],
        crash_control=CrashControl(True, 2, 0))
    d = R.rank(evidence([svc("newdrv", 3), svc("olddrv", 3)], registry=reg))
    (s,) = d.suspects
    assert s.name == "newdrv" and points(s, "recent-change") == 15 + 4
    assert "30 h before" in s.evidence[0].text


def test_first_crash_ignores_crashes_long_before_the_latest():
    old = R.Crash(T0 - timedelta(days=400), "dump a", R.bugchecks.lookup(0x50))
    recent = [R.Crash(T0 - timedelta(days=d), "dump b", R.bugchecks.lookup(0x7E)) for d in (20, 3, 0)]
    assert R.first_crash([old, *recent]) == T0 - timedelta(days=20)
    assert R.first_crash([R.Crash(None, "x", R.bugchecks.lookup(1))]) is None


def test_fault_in_the_kernel_is_not_a_driver_suspect():
    d = R.rank(evidence([svc("x", 2)], dumps=[small_dump_in("ntoskrnl.exe")]))
    assert d.suspects == []
    assert any("kernel (ntoskrnl.exe)" in note for note in d.cannot_tell)


def test_boot_critical_driver_gets_no_disable_command():
    d = R.rank(evidence([svc("storvsc", 0, zero=True, critical="the storage miniport of the disk controller")]))
    (s,) = d.suspects
    assert s.fix == [] and any("boot-critical" in n for n in s.cannot_tell)


def test_already_disabled_driver():
    d = R.rank(evidence([svc("haspnt", 0, override={"0": 4})], dumps=[small_dump_in("haspnt.sys")]))
    (s,) = d.suspects
    assert s.fix == [] and any("already disabled" in n for n in s.cannot_tell)
    assert points(s, "third-party-boot") == 0  # StartOverride 4 wins over Start 0


def test_unknown_name_is_a_suspect_without_a_command():
    d = R.rank(evidence([svc("a", 2)], events=[event(7000, "driver-failure", ["CldFlt"], status=50)]))
    (s,) = d.suspects
    assert s.name == "CldFlt" and s.fix == [] and any("no service of this name" in n for n in s.cannot_tell)


def _inventory(catroot: list[str], packages: list[str]) -> Inventory:
    def folder(role, names, path):
        return Folder(role, path, True, [CatalogFile(n, f"{path}\\{n}", 100) for n in names])
    return Inventory("Windows", {"catroot": folder("catroot", catroot, "Windows\\System32\\CatRoot\\{F750E6C3-38EE-11D1-85E5-00C04FC295EE}"),
                                 "catroot-127d": folder("catroot-127d", [], "Windows\\System32\\CatRoot\\{127D0A1D-4EF2-11D1-8608-00C04FC295EE}"),
                                 "packages": folder("packages", packages, "Windows\\servicing\\Packages")}, True)


def test_catalog_gap_suspect_and_its_fix():
    packages = [f"Package_{i}.cat" for i in range(60)]
    d = R.rank(evidence([svc("a", 2)], catalogs=_inventory(packages[:5], packages)))
    (s,) = d.suspects
    assert s.kind == "catalogs" and points(s, "catalog-gap") == 30
    assert s.fix == [f"offline-fix catroot restore {TARGET}"]
    # a small gap alone is no suspect
    assert R.rank(evidence([svc("a", 2)], catalogs=_inventory(packages[:58], packages))).suspects == []


def test_catalog_failures_without_packages_cannot_be_restored():
    ci = [Event(T0, 3010, "Microsoft-Windows-CodeIntegrity", "CI", i, "ci-failure", "catalog x could not be loaded",
                names=("x.cat",), source="CI.evtx") for i in range(3)]
    d = R.rank(evidence([svc("a", 2)], events=ci, catalogs=_inventory([], [])))
    (s,) = d.suspects
    assert points(s, "catalog-failure") == 25 + 2 * 6
    assert s.fix == [] and any("nothing to copy" in n for n in s.cannot_tell)


def test_dumps_disabled_and_quoted_target():
    reg = RegistryEvidence("ControlSet001", None, 7, crash_control=CrashControl(True, 0, 1))
    ev = evidence([svc("a", 2)], registry=reg)
    ev.target, ev.install = "/mnt/my disk", 2
    (s,) = R.rank(ev).suspects
    assert s.kind == "crash dumps disabled"
    assert s.fix == ["offline-fix crashdump enable '/mnt/my disk' --install 2"]


def test_boot_config_suspect():
    reg = RegistryEvidence("ControlSet001", None, 7, execute={"BootExecute": ["autocheck autochk *", "evil.exe"]},
                           crash_control=CrashControl(True, 7, 1))
    (s,) = R.rank(evidence([svc("a", 2)], registry=reg)).suspects
    assert s.kind == "boot config" and s.score == 15
    assert "/v BootExecute /t REG_MULTI_SZ /d 'autocheck autochk *' /f" in s.fix[0]


def test_to_dict_is_json():
    import json

    d = R.rank(evidence([svc("haspnt", 0)], dumps=[small_dump_in("haspnt.sys")]))
    doc = json.loads(json.dumps(d.to_dict()))
    assert doc["suspects"][0]["rank"] == 1 and doc["suspects"][0]["evidence"][0]["points"] == 50
    assert doc["timeline"]["counts"]["crash"] == 1
