"""``offline-fix diagnose TARGET``: from a broken disk to ranked suspects, their evidence, and the
commands that fix them. Read-only (the catalog index is cached in the target's state folder, as
``drivers verify`` does).

Gathers, in one pass over the Windows volume: crash dumps (``DumpFile`` and ``MinidumpDir`` of
CrashControl, by default ``Windows\\MEMORY.DMP`` and ``Windows\\Minidump\\*.dmp``), the System,
CodeIntegrity/Operational and Setup event logs, the drivers of the control set that boots (files
probed, filters, boot-critical), their signatures against the disk's own catalogs, the CatRoot gap
and the registry evidence (offline_fix/evidence/registry.py); then ranks (offline_fix/evidence/
rank.py, whose docstring states the rules). Exit code 1 when there are suspects, 0 when nothing is
suspicious.
"""

from __future__ import annotations

import io
import os
from pathlib import PureWindowsPath

import typer

from offline_fix.atomic import write_atomic

from offline_fix.cli.common import BACKUP_DIR, INSTALL, JSON, TARGET, open_install
from offline_fix.cli.output import emit_json, out, warn
from offline_fix.errors import NotFound, OfflineFixError

MAX_EVTX = 256 << 20  # logs up to this size are read into memory, larger ones parsed as a stream
MAX_MINIDUMPS = 64  # newest first
LOGS_DIR = "System32\\winevt\\Logs"
SHOWN_DETAILS = 5  # suspects shown with all their evidence in the terminal
SHOWN_LINES = 8  # evidence lines per suspect in the terminal
MAIN_CHARS = 90  # main evidence text in the suspects table
SHOWN_ROWS = 20  # suspects in the terminal table
MIN_WIDTH = 140  # columns when stdout is not a terminal (a pipe, a file)


def register(app: typer.Typer) -> None:
    app.command("diagnose")(diagnose_cmd)


# -- gathering -----------------------------------------------------------------------------------
def _read_dumps(fs, windows_dir: str, table, crash_control):
    """Kernel and user-mode dumps where CrashControl says they go (and the defaults)."""
    from offline_fix.evidence.dumps import DumpSet, read_dump
    from offline_fix.evidence.registry import volume_path
    from offline_fix.evidence.timeline import INFO, WARNING, Finding

    result = DumpSet()
    files: list[str] = []
    memory = [f"{windows_dir}\\MEMORY.DMP"]
    folders = [f"{windows_dir}\\Minidump"]
    if crash_control.dump_file:
        memory.insert(0, volume_path(crash_control.dump_file, table) or memory[0])
    if crash_control.minidump_dir:
        folders.insert(0, volume_path(crash_control.minidump_dir, table) or folders[0])
    for path in dict.fromkeys(p.lower() for p in memory):
        if fs.is_file(path):
            files.append(fs.resolve(path))
    for folder in dict.fromkeys(p.lower() for p in folders):
        try:
            entries = [e for e in fs.listdir(folder) if not e.is_dir and e.name.lower().endswith(".dmp")]
        except NotFound:
            continue
        except OfflineFixError as exc:
            result.findings.append(Finding(WARNING, "dump-folder-unreadable", str(exc), folder))
            continue
        entries.sort(key=lambda e: (e.mtime is None, e.mtime), reverse=True)
        if len(entries) > MAX_MINIDUMPS:
            result.findings.append(Finding(INFO, "dumps-not-read", f"{len(entries)} dumps in {folder}: only the "
                                           f"{MAX_MINIDUMPS} newest were read", folder))
        files.extend(f"{fs.resolve(folder)}\\{e.name}" for e in entries[:MAX_MINIDUMPS])
    for path in files:
        try:
            with fs.open(path) as fh:
                result.dumps.append(read_dump(fh, path))
        except OfflineFixError as exc:
            result.findings.append(Finding(WARNING, "dump-unreadable", str(exc), path, exc.offset))
    return result


def _read_logs(fs, windows_dir: str):
    """The System, CodeIntegrity/Operational and Setup logs of winevt\\Logs."""
    from offline_fix.evidence.eventlogs import LOG_FILES, LogSet, read_log
    from offline_fix.evidence.timeline import INFO, WARNING, Finding

    result = LogSet()
    folder = f"{windows_dir}\\{LOGS_DIR}"
    try:
        present = {e.name.lower(): e.name for e in fs.listdir(folder) if not e.is_dir}
        folder = fs.resolve(folder)
    except NotFound:
        result.findings.append(Finding(INFO, "evtx-missing", f"no event log folder {folder}", folder))
        return result
    for wanted in LOG_FILES:
        name = present.get(wanted.lower())
        if name is None:
            result.findings.append(Finding(INFO, "evtx-missing", f"no {wanted} in the event log folder",
                                           f"{folder}\\{wanted}"))
            continue
        path = f"{folder}\\{name}"
        try:
            if fs.stat(path).size <= MAX_EVTX:
                result.logs.append(read_log(io.BytesIO(fs.read_bytes(path, MAX_EVTX)), path))
            else:  # a huge log is parsed from the volume as a stream instead of from memory
                with fs.open(path) as fh:
                    result.logs.append(read_log(fh, path))
        except OfflineFixError as exc:
            result.findings.append(Finding(WARNING, "evtx-unreadable", str(exc), path, exc.offset))
    return result


class _LazyTrust:
    """Microsoft's roots (TrustStore.microsoft()), loaded on first use: a driver with no signature
    and no catalog hit never needs them."""

    def __init__(self) -> None:
        self._store = None

    def __getattr__(self, name: str):
        if self._store is None:
            from offline_fix.signing.verify import TrustStore

            self._store = TrustStore.microsoft()
        return getattr(self._store, name)


def _verify(fs, windows_dir: str, table, state_dir: str, inventory) -> dict:
    """Signing verdicts of the drivers that load and have a readable, non-zero file."""
    from offline_fix.evidence.rank import loads
    from offline_fix.hive.reader import fold_name
    from offline_fix.signing.verdict import driver_verdict
    from offline_fix.windows import catroot as C

    indexes = {role: C.catalog_index(fs, inventory.folders[role], state_dir=state_dir) for role in (C.CATROOT, C.PACKAGES)}
    inventory.contents_checked = True
    from offline_fix.cli.verify import driver_source

    trust = _LazyTrust()
    verdicts = {}
    for svc in table.services:
        f = svc.file
        if f is None or not f.exists or f.path is None or f.all_zero or not f.size or not loads(svc):
            continue
        try:
            source = driver_source(fs, f.path)  # NTFS: straight from the file's MFT record (target/fs.py)
        except OfflineFixError:
            continue  # the file probe already said what is wrong with it
        try:
            verdicts[fold_name(svc.name)] = driver_verdict(source, catroot=indexes[C.CATROOT],
                                                           packages=indexes[C.PACKAGES], trust=trust, name=f.path)
        finally:
            if hasattr(source, "close"):
                source.close()
    return verdicts


def gather(target: str, install: int | None, backup_dir: str | None, *, verify: bool = True,
           window_days: int = 7):
    """(Evidence, context dict) for TARGET; the target is closed before returning."""
    from offline_fix.changes.state import state_dir_for
    from offline_fix.cli.drivers import install_context
    from offline_fix.evidence.rank import Evidence, crashes_of, first_crash
    from offline_fix.evidence.registry import all_services, read_crash_control, read_registry
    from offline_fix.evidence.timeline import INFO, WARNING, Finding
    from offline_fix.windows import catroot as C
    from offline_fix.windows import system
    from offline_fix.windows.services import list_services, windows_dir_of

    tgt, inst = open_install(target, install)
    with tgt:
        fs = inst.fs
        hive = inst.system_hive()
        ctx = install_context(tgt, inst)
        windows_dir = windows_dir_of(inst.system_hive_path)
        table = list_services(hive, fs, windows_dir=windows_dir, drive=ctx["drive"], bitlocker=ctx["bitlocker"])
        findings = [Finding(INFO, "services", w) for w in table.warnings[:20]]
        if hive.dirty:
            findings.insert(0, Finding(WARNING, "hive-dirty", "the SYSTEM hive is dirty: its transaction logs hold "
                                       "changes not read here", inst.system_hive_path))
        try:
            version = system.windows_version(hive, table.control_set, inst.software_hive())
            windows = version.to_dict()
            build = version.build
        except OfflineFixError as exc:
            windows, build = {"error": str(exc)}, None
        crash_control = read_crash_control(hive, table.control_set)
        dumps = _read_dumps(fs, windows_dir, table, crash_control)
        logs = _read_logs(fs, windows_dir)
        anchor = first_crash(crashes_of(dumps, logs))
        registry = read_registry(hive, table, anchor=anchor, events=logs.events, window_days=window_days)
        inventory = C.inventory(fs, windows_dir, contents=False, build=build)
        verdicts = {}
        cannot_tell = []
        if verify:
            verdicts = _verify(fs, windows_dir, table, state_dir_for(target, backup_dir), inventory)
        else:
            cannot_tell.append("signatures were not checked (--no-verify)")
        evidence = Evidence(target, install, table, dumps, logs, registry, verdicts, inventory,
                            all_services(hive, table.control_set), findings, cannot_tell)
        context = {"install": inst.number, "partition": inst.volume.index, "windows": windows,
                   "control_set": table.control_set, "windows_dir": windows_dir, "drive": ctx["drive"],
                   "system_hive": inst.system_hive_path}
    return evidence, context


# -- the document ----------------------------------------------------------------------------------
def document(evidence, diagnosis, context: dict) -> dict:
    """The --json document (also what the HTML report renders)."""
    from collections import Counter

    from offline_fix.evidence.rank import quote

    table = evidence.table
    verdicts = Counter(v.verdict for v in evidence.verdicts.values())
    inv = evidence.catalogs
    hint = f"offline-fix catroot restore {quote(evidence.target)}" + (f" --install {evidence.install}" if evidence.install else "")
    logs = [{"path": log.path, "channel": log.channel, "records": log.records, "errors": log.errors,
             "dirty": log.dirty, "events": len(log.events)} for log in evidence.logs.logs]
    return {
        "target": evidence.target,
        **context,
        "verdict": summary_line(diagnosis),
        **diagnosis.to_dict(),
        "evidence": {
            "dumps": evidence.dumps.to_dict(),
            "event_logs": {"logs": logs, "events": [e.to_dict() for e in evidence.logs.events]},
            "registry": evidence.registry.to_dict(),
            "drivers": {
                "count": len(table.services),
                "problems": [{"name": s.name, "problems": s.problems(), "file": s.file.path if s.file else None}
                             for s in table.services if s.problems()],
                "verified": len(evidence.verdicts),
                "verdicts": dict(sorted(verdicts.items())),
                "not_signed": sorted(v.name for v in evidence.verdicts.values() if not v.ok),
            },
            "catalogs": inv.to_dict(hint) if inv is not None else None,
        },
    }


def summary_line(diagnosis) -> str:
    if not diagnosis.suspects:
        return "nothing suspicious found"
    top = diagnosis.suspects[0]
    return (f"{len(diagnosis.suspects)} suspect{'s' if len(diagnosis.suspects) != 1 else ''}; most likely: "
            f"{top.name} ({top.kind}, score {top.score})")


# -- terminal --------------------------------------------------------------------------------------
def _render(doc: dict, diagnosis) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = out()
    if not console.is_terminal:
        console.width = max(console.width, MIN_WIDTH)
    w = doc.get("windows") or {}
    name = w.get("product_name") or w.get("name") or "Windows"
    build = f" (build {w['build']})" if w.get("build") else ""
    console.print(f"[bold]{escape(doc['target'])}[/bold]: {escape(str(name))}{build}, install {doc['install']} "
                  f"(partition {doc['partition']}), {doc['control_set']}", soft_wrap=True)
    ev = doc["evidence"]
    kernel = sum(1 for d in ev["dumps"]["dumps"] if d["kind"] == "kernel")
    user = len(ev["dumps"]["dumps"]) - kernel
    logs = ", ".join(f"{PureWindowsPath(log['path']).name} ({log['records']:,} records)" for log in ev["event_logs"]["logs"]) or "none"
    cats = ev["catalogs"] or {}
    console.print(f"evidence: {kernel} kernel dump(s){f', {user} user-mode' if user else ''}; event logs: {escape(logs)}; "
                  f"{ev['drivers']['count']} drivers ({ev['drivers']['verified']} signatures checked); CatRoot "
                  f"{cats.get('catroot_count', 0):,} catalogs, {cats.get('missing_count', 0):,} missing", soft_wrap=True)
    for c in diagnosis.crashes[-10:]:
        when = c.time.isoformat().replace("+00:00", "Z") if c.time else "undated"
        console.print(f"  crash {when}  {escape(c.bugcheck.label)}  {escape(c.source)}"
                      + (f"  faulting module {escape(c.module)}" if c.module else ""), soft_wrap=True)
    if len(diagnosis.crashes) > 10:
        console.print(f"  ... {len(diagnosis.crashes) - 10} earlier crashes (--json or --report list them)")
    if not diagnosis.suspects:
        console.print("[green]nothing suspicious found[/green]")
    else:
        t = Table(title="suspects", title_justify="left", show_lines=False)
        for col in ("#", "score", "kind", "name", "lines", "main evidence"):
            t.add_column(col, overflow="ellipsis", no_wrap=col != "main evidence")
        for i, s in enumerate(diagnosis.suspects[:SHOWN_ROWS], 1):
            top = max(s.evidence, key=lambda e: e.points)
            text = top.text if len(top.text) <= MAIN_CHARS else top.text[:MAIN_CHARS - 3] + "..."
            t.add_row(str(i), str(s.score), s.kind, escape(s.name), str(len(s.evidence)), escape(text))
        console.print(t)
        if len(diagnosis.suspects) > SHOWN_ROWS:
            console.print(f"... and {len(diagnosis.suspects) - SHOWN_ROWS} more suspects (--json or --report list them)")
        for i, s in enumerate(diagnosis.suspects[:SHOWN_DETAILS], 1):
            console.print(f"\n[bold]{i}. {escape(s.name)}[/bold] ({s.kind}, score {s.score})", soft_wrap=True)
            lines = sorted(s.evidence, key=lambda e: -e.points)
            for e in lines[:SHOWN_LINES]:
                when = e.time.isoformat().replace("+00:00", "Z") + " " if e.time else ""
                console.print(f"   +{e.points:<3} {escape(when)}{escape(e.source)}: {escape(e.text)}", soft_wrap=True)
            if len(lines) > SHOWN_LINES:
                console.print(f"   ... {len(lines) - SHOWN_LINES} more lines (--json or --report)")
            for cmd in s.fix:
                console.print(f"   fix: {escape(cmd)}", soft_wrap=True)
            for note in s.cannot_tell:
                console.print(f"   cannot tell: {escape(note)}", soft_wrap=True)
    if diagnosis.cannot_tell:
        console.print("\nwhat this cannot tell:")
        for note in diagnosis.cannot_tell:
            console.print(f"  - {escape(note)}", soft_wrap=True)
    console.print(f"\n{escape(doc['verdict'])}", soft_wrap=True)


def write_report(path: str, doc: dict) -> None:
    """Write the HTML report next to itself, then rename (never a half-written page)."""
    from offline_fix.report.html import render

    page = render(doc)
    if os.path.isdir(path):
        raise NotFound(f"{path} is a folder")
    write_atomic(path, page)


def diagnose_cmd(
    target: str = TARGET,
    report: str = typer.Option(None, "--report", metavar="FILE.html", help="Also write a self-contained HTML report."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Do not check driver signatures (faster)."),
    window_days: int = typer.Option(7, "--days", min=1, max=365,
                                    help="Drivers changed this many days before the first crash count as recent."),
    install: int = INSTALL,
    backup_dir: str = BACKUP_DIR,
    json_out: bool = JSON,
) -> int:
    """Rank the suspects (drivers, catalogs, boot settings) from crash dumps, event logs, registry and signatures; exit 1 when there are suspects. Read-only."""
    from offline_fix.evidence.rank import rank

    evidence, context = gather(target, install, backup_dir, verify=not no_verify, window_days=window_days)
    diagnosis = rank(evidence)
    doc = document(evidence, diagnosis, context)
    if report:
        write_report(report, doc)
    if json_out:
        emit_json(doc)
    else:
        _render(doc, diagnosis)
        for f in diagnosis.findings:
            if f.severity == "warning":
                warn(f"{f.message}" + (f" ({f.source})" if f.source else ""))
        if report:
            out().print(f"report written to {report}", soft_wrap=True, markup=False)
    return 1 if diagnosis.suspects else 0
