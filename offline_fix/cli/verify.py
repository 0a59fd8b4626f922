"""``offline-fix drivers verify TARGET [NAME...]``: are the drivers signed, by the disk's own catalogs?

For each driver: its Authenticode SHA1 and SHA256, its embedded signature (signed digest equal to
the hash, signer, chain to a Microsoft root), its membership in the disk's CatRoot
\\{F750E6C3-...} catalogs (DRIVER_ACTION_VERIFY, what Code Integrity consults) and else in
servicing\\Packages, and one verdict (offline_fix/signing/verdict.py). sigcheck on a helper VM
checks against the helper's catalogs; this checks against the broken disk's.

Catalogs are indexed once per run and cached in the target's state folder (keyed by path, size
and mtime); a catalog's signature is verified only when a driver's hash is found in it. Read-only.
Registered on the ``drivers`` sub-app (offline_fix/cli/drivers.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import typer

from offline_fix.cli.common import BACKUP_DIR, INSTALL, JSON, TARGET, open_install
from offline_fix.cli.output import emit_json, warn, write_lines
from offline_fix.errors import NotFound, OfflineFixError, PermissionDenied
from offline_fix.target.fs import read_up_to

MAX_WHOLE_READ = 64 << 20  # drivers up to this size are read in one piece, larger ones streamed
DRIVERS_DIR = "System32\\drivers"


def register(drivers_app: typer.Typer) -> None:
    drivers_app.command("verify")(verify_cmd)


@dataclass
class Item:
    """One file to judge: the service that loads it (if any) and where it is on the volume."""

    name: str                 # service name, or file name with --all-files
    path: str | None          # on the volume; None when it cannot be resolved
    service: object = None    # offline_fix.windows.services.Service
    note: str | None = None   # why path is None


def parse_time(text: str | None) -> datetime | None:
    """ISO 8601 (a date, or date and time; no zone = UTC) -> aware datetime."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"not an ISO 8601 time: {text!r} (e.g. 2024-06-01 or 2024-06-01T12:00:00Z)",
                                 param_hint="--at") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _load_roots(paths: list[str]) -> list:
    """Certificates (DER or PEM) to trust besides the Microsoft roots."""
    from cryptography import x509

    roots = []
    for path in paths or []:
        try:
            with open(path, "rb") as fh:
                data = fh.read(1 << 20)
        except FileNotFoundError:
            raise NotFound("root certificate file not found", path=path) from None
        except OSError as exc:
            raise PermissionDenied(f"cannot read root certificate: {exc.strerror}", path=path) from None
        try:
            roots.extend(x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data
                         else [x509.load_der_x509_certificate(data)])
        except ValueError as exc:
            from offline_fix.signing.pkcs7 import SignatureError

            raise SignatureError(f"not an X.509 certificate (DER or PEM): {exc}", path=path) from None
    return roots


def effective_start(svc) -> int | None:
    """Start as Windows applies it: StartOverride values, when present, win over Start."""
    overrides = [v for v in svc.start_override.values() if isinstance(v, int)]
    if overrides:
        return min(overrides)
    return svc.start


def _driver_items(tgt, inst, windows_dir: str, names: list[str], all_files: bool) -> tuple[list[Item], list[str]]:
    from offline_fix.cli.drivers import install_context
    from offline_fix.windows.services import SERVICE_DISABLED, list_services

    fs = inst.fs
    folder = f"{windows_dir}\\{DRIVERS_DIR}"
    files: dict[str, str] = {}
    try:
        folder = fs.resolve(folder)
        files = {e.name.casefold(): f"{folder}\\{e.name}" for e in fs.listdir(folder) if not e.is_dir}
    except NotFound:
        pass
    if all_files and not names:
        return [Item(p.rsplit("\\", 1)[1], p) for _, p in sorted(files.items())], []
    ctx = install_context(tgt, inst)
    table = list_services(inst.system_hive(), fs, windows_dir=windows_dir, drive=ctx["drive"], bitlocker=ctx["bitlocker"])
    warnings = list(table.warnings)

    def from_service(svc) -> Item:
        f = svc.file
        if f is None or f.path is None:
            note = (svc.image.note if svc.image else None) or "no file path"
            return Item(svc.name, None, svc, note)
        return Item(svc.name, f.path, svc)

    if not names:
        return [from_service(s) for s in sorted(table.services, key=lambda s: s.name.casefold())
                if effective_start(s) != SERVICE_DISABLED], warnings
    items, unknown = [], []
    for name in names:
        svc = table.get(name)
        if svc is not None:
            items.append(from_service(svc))
            continue
        path = files.get(name.casefold()) or files.get(f"{name}.sys".casefold())
        if path is not None:
            items.append(Item(path.rsplit("\\", 1)[1], path))
        else:
            unknown.append(name)
    if unknown:
        raise NotFound(f"no driver service and no file in {folder} named {', '.join(unknown)}")
    return items, warnings


def driver_source(fs, path: str):
    """Bytes for most drivers, the open stream for very large files; None when the file is missing.
    One path lookup per file."""
    try:
        fh = fs.open(path)
    except NotFound:
        return None
    data = read_up_to(fh, MAX_WHOLE_READ + 1)
    if len(data) <= MAX_WHOLE_READ:
        fh.close()
        return data
    fh.seek(0)
    return fh


def verify_cmd(
    target: str = TARGET,
    names: list[str] = typer.Argument(None, metavar="[NAME...]",
                                      help="Service names or file names in System32\\drivers (default: every driver service not disabled)."),
    all_files: bool = typer.Option(False, "--all-files", help="Every file in System32\\drivers instead of the driver services."),
    at: str = typer.Option(None, "--at", metavar="TIME",
                           help="Verification time, ISO 8601 (default: each signature's timestamp, else now). Pin it for reproducible output."),
    trust_root: list[str] = typer.Option(None, "--trust-root", metavar="CERT",
                                         help="Also trust this root certificate (DER or PEM), e.g. a test-signing CA. Repeatable."),
    install: int = INSTALL,
    backup_dir: str = BACKUP_DIR,
    json_out: bool = JSON,
) -> int:
    """Verify driver signatures (embedded, CatRoot, servicing\\Packages) against the disk's own catalogs; exit 1 when any is not signed. Read-only."""
    from offline_fix.changes.state import state_dir_for
    from offline_fix.signing.verdict import CATALOG_MISSING, NOT_A_PE, VERDICTS, DriverVerdict, driver_verdict
    from offline_fix.signing.verify import TrustStore
    from offline_fix.windows import catroot as C
    from offline_fix.windows.services import windows_dir_of

    when = parse_time(at)
    trust = TrustStore.microsoft(_load_roots(trust_root))
    tgt, inst = open_install(target, install)
    with tgt:
        fs = inst.fs
        windows_dir = windows_dir_of(inst.system_hive_path)
        items, warnings = _driver_items(tgt, inst, windows_dir, names or [], all_files)
        state_dir = state_dir_for(target, backup_dir)
        folders = {role: C.list_folder(fs, windows_dir, role) for role in (C.CATROOT, C.PACKAGES)}
        indexes = {role: C.catalog_index(fs, folder, state_dir=state_dir) for role, folder in folders.items()}
        results = []
        for item in items:
            source = None
            if item.path is not None:
                try:
                    source = driver_source(fs, item.path)
                except OfflineFixError as exc:
                    source = exc
            if isinstance(source, OfflineFixError):
                v = DriverVerdict(item.path, NOT_A_PE, f"unreadable: {source}")
            else:
                v = driver_verdict(source, catroot=indexes[C.CATROOT], packages=indexes[C.PACKAGES], trust=trust,
                                   at=when, name=item.path or item.name)
                if item.path is None:
                    v.reason = f"file not resolved: {item.note}"
            if hasattr(source, "close"):
                source.close()
            results.append((item, v))
    counts = {k: 0 for k in VERDICTS}
    for _, v in results:
        counts[v.verdict] += 1
    bad = [(i, v) for i, v in results if not v.ok]
    hint = f"offline-fix catroot restore {target}" + (f" --install {install}" if install else "")
    line = _verdict_line(results, counts, bad, hint, CATALOG_MISSING)
    if json_out:
        emit_json({
            "target": target, "install": inst.number, "at": when.isoformat() if when else None,
            "mode": "all-files" if all_files and not names else ("names" if names else "services"),
            "catalogs": {role: {"folder": folders[role].path, "present": folders[role].present,
                                **indexes[role].summary()} for role in folders},
            "counts": counts, "ok": not bad, "verdict": line,
            "drivers": [_row(i, v) for i, v in results], "warnings": warnings,
        })
    else:
        _render(target, results, line)
        for w in warnings[:20]:
            warn(w)
    return 1 if bad else 0


def _row(item: Item, v) -> dict:
    d = {"name": item.name, "path": item.path}
    svc = item.service
    if svc is not None:
        d["service"] = {"name": svc.name, "type": svc.type, "start": svc.start, "start_name": svc.start_name,
                        "effective_start": effective_start(svc), "group": svc.group,
                        "boot_critical": svc.boot_critical is not None}
    return v.to_dict() | d  # v's own "name" is the file path


def _verdict_line(results, counts, bad, hint: str, catalog_missing: str) -> str:
    total = len(results)
    if not total:
        return "no driver to verify"
    summary = ", ".join(f"{n:,} {k}" for k, n in counts.items() if n)
    if not bad:
        return f"all {total:,} drivers are signed ({summary})"
    restorable = counts[catalog_missing]
    line = f"{len(bad):,} of {total:,} drivers are not signed ({summary})"
    if restorable:
        line += f"; {restorable:,} only by catalogs missing from CatRoot: run `{hint}`"
    return line


def _render(target: str, results, line: str) -> None:
    rows = [("NAME", "VERDICT", "SIGNED BY / CATALOG / REASON", "FILE")]
    for item, v in results:
        if v.verdict in ("signed-catalog", "catalog-missing"):
            by = v.catalog or ""
        elif v.verdict == "signed-embedded":
            by = v.signer or ""
        else:
            by = v.reason
        rows.append((item.name, v.verdict, by, item.path or "-"))
    widths = [min(max(len(r[i]) for r in rows), cap) for i, cap in enumerate((28, 16, 70, 0))]
    lines = [f"{target}: {len(results):,} drivers"]
    for r in rows:
        cells = [r[i].ljust(widths[i]) if widths[i] else r[i] for i in range(len(r))]
        lines.append("  ".join(cells).rstrip())
    lines.append(line)
    write_lines(lines)
