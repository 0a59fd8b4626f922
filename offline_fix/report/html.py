"""The ``diagnose --report FILE.html`` page: one self-contained HTML file (no script, no font, no
image or style sheet fetched from anywhere), readable offline on the helper VM or mailed on.

It renders the ``diagnose --json`` document: the suspects table (``id="suspects"``), each
suspect's evidence lines, fix commands and limits, a timeline chart of crashes, boots, shutdowns,
driver changes and failures as inline SVG, then the evidence itself (crashes, dumps, event logs,
registry, drivers, catalogs) and what the diagnosis cannot tell. Every text from the disk is
escaped: a hostile event log or service name cannot inject markup.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from html import escape

CHART_WIDTH = 1000
LANE_HEIGHT = 26
CHART_LEFT = 130
CHART_RIGHT = 20
CHART_MAX_DAYS = 90  # the chart spans at most this many days, ending at the latest entry
MAX_TABLE_ENTRIES = 1000  # timeline table rows (newest kept)
LANES = (  # (timeline kind, label, colour)
    ("crash", "crashes", "#c62828"),
    ("shutdown", "shutdowns", "#ef6c00"),
    ("boot", "boots", "#2e7d32"),
    ("driver-change", "driver changes", "#1565c0"),
    ("driver-failure", "driver failures", "#6a1b9a"),
    ("ci-failure", "Code Integrity", "#8d6e63"),
    ("update", "updates", "#546e7a"),
)

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
main{max-width:1200px;margin:0 auto;padding:24px}
header{background:#1f2937;color:#fff;padding:20px 24px}
header h1{margin:0 0 6px 0;font-size:22px}
header p{margin:2px 0;color:#d1d5db}
.verdict{font-size:18px;font-weight:600;margin:16px 0;padding:12px 16px;border-radius:6px;background:#fff3cd;border:1px solid #e0c36a}
.verdict.ok{background:#e6f4ea;border-color:#8bc34a}
section{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:16px 20px;margin:16px 0}
h2{font-size:18px;margin:0 0 12px 0}
h3{font-size:16px;margin:8px 0}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #e5e7eb;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f3f4f6}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12.5px}
pre{background:#0d1117;color:#e6edf3;padding:8px 12px;border-radius:4px;white-space:pre-wrap;word-break:break-all}
.bar{display:inline-block;height:10px;background:#c62828;border-radius:2px;vertical-align:middle;margin-right:6px}
.kind{display:inline-block;padding:1px 6px;border-radius:10px;background:#e5e7eb;font-size:12px}
.muted{color:#6b7280}
ul{margin:6px 0 6px 20px;padding:0}
.warning{color:#9a3412}
svg text{font-family:system-ui,"DejaVu Sans",sans-serif}
"""


def _e(value) -> str:
    return escape("" if value is None else str(value), quote=True)


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _short(text: str | None) -> str:
    when = _time(text)
    return when.strftime("%Y-%m-%d %H:%M:%S") if when else ""


def _table(headers: list[str], rows: list[list[str]], *, attrs: str = "") -> str:
    """A table; cells are already HTML."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# -- sections ------------------------------------------------------------------------------------
def _header(doc: dict) -> str:
    w = doc.get("windows") or {}
    name = w.get("name") or w.get("product_name") or "Windows"
    build = f", build {w['build']}" if w.get("build") else ""
    return (f"<header><h1>offline-fix diagnose: {_e(doc.get('target'))}</h1>"
            f"<p>{_e(name)}{_e(build)} &middot; install {_e(doc.get('install'))} (partition {_e(doc.get('partition'))})"
            f" &middot; {_e(doc.get('control_set'))} &middot; Windows folder {_e(doc.get('windows_dir'))}</p>"
            f"<p>first crash: {_e(_short(doc.get('first_crash')) or 'none dated')}</p></header>")


def _suspects(doc: dict) -> str:
    suspects = doc.get("suspects") or []
    if not suspects:
        return ('<section><h2>Suspects</h2><table id="suspects"><tbody><tr><td>nothing suspicious found</td></tr>'
                "</tbody></table></section>")
    top = max(s["score"] for s in suspects) or 1
    rows = []
    for s in suspects:
        main = max(s["evidence"], key=lambda e: e["points"]) if s["evidence"] else {"text": ""}
        width = max(4, int(120 * s["score"] / top))
        rows.append([f'<a href="#suspect-{s["rank"]}">{s["rank"]}</a>',
                     f'<span class="bar" style="width:{width}px"></span>{s["score"]}',
                     f'<span class="kind">{_e(s["kind"])}</span>', f"<b>{_e(s['name'])}</b>",
                     f"{_e(main['text'])} <span class='muted'>({len(s['evidence'])} lines)</span>",
                     "<br>".join(f"<code>{_e(c)}</code>" for c in s["fix"]) or "<span class='muted'>-</span>"])
    table = _table(["#", "score", "kind", "name", "main evidence", "fix"], rows, attrs=' id="suspects"')
    details = "".join(_suspect(s) for s in suspects)
    return f"<section><h2>Suspects</h2>{table}</section>{details}"


def _suspect(s: dict) -> str:
    rows = [[f"+{e['points']}", _e(_short(e["time"])), _e(e["source"]), _e(e["text"])] for e in s["evidence"]]
    parts = [f'<section id="suspect-{s["rank"]}"><h3>{s["rank"]}. {_e(s["name"])} '
             f'<span class="kind">{_e(s["kind"])}</span> score {s["score"]}</h3>',
             _table(["points", "time (UTC)", "source", "evidence"], rows)]
    if s["fix"]:
        parts.append("<h3>Fix</h3><pre>" + "\n".join(_e(c) for c in s["fix"]) + "</pre>")
    if s["cannot_tell"]:
        parts.append("<h3>What it cannot tell</h3><ul>" + "".join(f"<li>{_e(n)}</li>" for n in s["cannot_tell"]) + "</ul>")
    parts.append("</section>")
    return "".join(parts)


def _chart(doc: dict) -> str:
    timeline = (doc.get("timeline") or {}).get("entries") or []
    dated = [(t, e) for e in timeline if (t := _time(e.get("time"))) is not None]
    if not dated:
        return "<section><h2>Timeline</h2><p class='muted'>no dated evidence</p></section>"
    end = max(t for t, _ in dated)
    start = min(t for t, _ in dated)
    first = _time(doc.get("first_crash"))
    window = ((doc.get("evidence") or {}).get("registry") or {}).get("window")
    if end - start > timedelta(days=CHART_MAX_DAYS):
        start = end - timedelta(days=CHART_MAX_DAYS)
        if first is not None and first < start:
            start = first - timedelta(days=(doc.get("evidence") or {}).get("registry", {}).get("window_days", 7) + 1)
    span = (end - start).total_seconds() or 3600.0
    pad = span * 0.03
    lo, hi = start - timedelta(seconds=pad), end + timedelta(seconds=pad)
    total = (hi - lo).total_seconds()
    inner = CHART_WIDTH - CHART_LEFT - CHART_RIGHT
    height = LANE_HEIGHT * len(LANES) + 40

    def x(when: datetime) -> float:
        return CHART_LEFT + inner * (when - lo).total_seconds() / total

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" height="{height}" '
             f'viewBox="0 0 {CHART_WIDTH} {height}" style="max-width:100%;height:auto" role="img" aria-label="timeline of crashes, boots and driver changes">',
             f'<rect x="0" y="0" width="{CHART_WIDTH}" height="{height}" fill="#ffffff"/>']
    if window:
        w0, w1 = _time(window[0]), _time(window[1])
        if w0 and w1:
            a, b = max(x(w0), CHART_LEFT), min(x(w1), CHART_WIDTH - CHART_RIGHT)
            if b > a:
                parts.append(f'<rect x="{a:.1f}" y="4" width="{b - a:.1f}" height="{LANE_HEIGHT * len(LANES)}" '
                             'fill="#fff8e1"><title>the days before the first crash</title></rect>')
    for i, (kind, label, colour) in enumerate(LANES):
        y = 4 + i * LANE_HEIGHT + LANE_HEIGHT / 2
        parts.append(f'<text x="8" y="{y + 4:.1f}" font-size="12" fill="#374151">{_e(label)}</text>')
        parts.append(f'<line x1="{CHART_LEFT}" y1="{y:.1f}" x2="{CHART_WIDTH - CHART_RIGHT}" y2="{y:.1f}" '
                     'stroke="#e5e7eb" stroke-width="1"/>')
    lane_of = {kind: i for i, (kind, _, _) in enumerate(LANES)}
    hidden = 0
    for when, e in dated:
        if when < lo:
            hidden += 1
            continue
        i = lane_of.get(e.get("kind"))
        if i is None:
            continue
        y = 4 + i * LANE_HEIGHT + LANE_HEIGHT / 2
        colour = LANES[i][2]
        tip = _e(f"{_short(e.get('time'))} {e.get('summary')} ({e.get('source')})")
        if e.get("kind") == "crash":
            parts.append(f'<rect x="{x(when) - 5:.1f}" y="{y - 8:.1f}" width="10" height="16" fill="{colour}">'
                         f"<title>{tip}</title></rect>")
        else:
            parts.append(f'<circle cx="{x(when):.1f}" cy="{y:.1f}" r="5" fill="{colour}" fill-opacity="0.8">'
                         f"<title>{tip}</title></circle>")
    if first is not None and lo <= first <= hi:
        parts.append(f'<line x1="{x(first):.1f}" y1="2" x2="{x(first):.1f}" y2="{LANE_HEIGHT * len(LANES) + 6}" '
                     'stroke="#c62828" stroke-dasharray="4 3"><title>first crash</title></line>')
    axis_y = LANE_HEIGHT * len(LANES) + 10
    parts.append(f'<line x1="{CHART_LEFT}" y1="{axis_y}" x2="{CHART_WIDTH - CHART_RIGHT}" y2="{axis_y}" stroke="#6b7280"/>')
    fmt = "%Y-%m-%d" if total > 3 * 86400 else ("%m-%d %H:%M" if total > 2 * 3600 else "%H:%M:%S")
    for n in range(6):
        when = lo + timedelta(seconds=total * n / 5)
        tx = x(when)
        parts.append(f'<line x1="{tx:.1f}" y1="{axis_y}" x2="{tx:.1f}" y2="{axis_y + 5}" stroke="#6b7280"/>')
        anchor = "start" if n == 0 else ("end" if n == 5 else "middle")
        parts.append(f'<text x="{tx:.1f}" y="{axis_y + 20}" font-size="11" text-anchor="{anchor}" fill="#374151">'
                     f"{_e(when.strftime(fmt))}</text>")
    parts.append("</svg>")
    note = f"<p class='muted'>{hidden:,} earlier entries are not drawn (see the table below).</p>" if hidden else ""
    legend = ("<p class='muted'>Each mark is one entry (hover for its text); the shaded band is the "
              f"{_e(((doc.get('evidence') or {}).get('registry') or {}).get('window_days', ''))} days before the "
              "first crash (dashed line).</p>") if window else ""
    return f"<section><h2>Timeline</h2>{''.join(parts)}{legend}{note}</section>"


def _crashes(doc: dict) -> str:
    crashes = doc.get("crashes") or []
    if not crashes:
        return "<section><h2>Crashes</h2><p class='muted'>no crash recorded (no kernel dump, no BugCheck 1001, no Kernel-Power 41 with a bug check)</p></section>"
    rows = [[_e(_short(c["time"])), f"<code>{_e(c['label'])}</code>", _e(c["bugcheck"].get("meaning")), _e(c["source"]),
             _e(c.get("module") or "")] for c in crashes]
    return "<section><h2>Crashes</h2>" + _table(["time (UTC)", "bug check", "meaning", "source", "faulting module"], rows) + "</section>"


def _dumps(ev: dict) -> str:
    dumps = (ev.get("dumps") or {}).get("dumps") or []
    if not dumps:
        return "<h3>Crash dumps</h3><p class='muted'>none found</p>"
    rows = []
    for d in dumps:
        if d["kind"] == "kernel":
            what = (f"<code>{_e(d['bugcheck']['code_hex'])}</code> {_e(d['bugcheck']['name'])} "
                    f"({_e(', '.join(d['parameters']))}), {_e(d['dump_type_name'])} dump, build {_e(d['build'])}, {_e(d['machine'])}")
            if d.get("faulting_module"):
                what += f"; faulting module <b>{_e(d['faulting_module'])}</b>"
            notes = "<br>".join(_e(n) for n in d.get("cannot_tell") or [])
        else:
            what, notes = _e(d["summary"]), ""
        rows.append([_e(d["path"]), _e(_short(d.get("time"))), what, f"<span class='muted'>{notes}</span>"])
    return "<h3>Crash dumps</h3>" + _table(["file", "time (UTC)", "what the header says", "cannot tell"], rows)


def _logs(ev: dict) -> str:
    logs = (ev.get("event_logs") or {}).get("logs") or []
    rows = [[_e(log["path"]), _e(log.get("channel")), f"{log['records']:,}", str(log["errors"]), str(log["events"])]
            for log in logs]
    out = "<h3>Event logs</h3>" + (_table(["file", "channel", "records", "unreadable", "events used"], rows) if rows
                                  else "<p class='muted'>no event log read</p>")
    return out


def _registry(ev: dict) -> str:
    reg = ev.get("registry") or {}
    cc = reg.get("crash_control") or {}
    items = [f"CrashControl: dump type <b>{_e(cc.get('type'))}</b>, AutoReboot {_e(cc.get('auto_reboot'))}, "
             f"DumpFile {_e(cc.get('dump_file'))}, MinidumpDir {_e(cc.get('minidump_dir'))}"]
    items += [f"<span class='warning'>{_e(p)}</span>" for p in cc.get("problems") or []]
    for name, entries in (reg.get("execute") or {}).items():
        items.append(f"{_e(name)}: {_e('; '.join(entries) or '(empty)')}")
    for r in reg.get("pending_renames") or []:
        items.append(f"{_e(r['value'])}: {_e(r['text'])}" + (f" (driver {_e(r['service'])})" if r.get("service") else ""))
    for c in reg.get("changed") or []:
        items.append(f"service key {_e(c['name'])} written {_e(_short(c['time']))}")
    for c in reg.get("installed") or []:
        items.append(f"driver installed {_e(c['name'])} {_e(_short(c['time']))} ({_e(c['source'])})"
                     + (" in the window before the first crash" if c.get("in_window") else ""))
    for m in reg.get("mass_writes") or []:
        items.append(f"{m['count']} service keys written in the minute of {_e(_short(m['time']))} (not counted)")
    return f"<h3>Registry ({_e(reg.get('control_set'))})</h3><ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _drivers(ev: dict) -> str:
    d = ev.get("drivers") or {}
    verdicts = ", ".join(f"{n:,} {_e(k)}" for k, n in (d.get("verdicts") or {}).items()) or "not checked"
    rows = [[_e(p["name"]), _e(", ".join(p["problems"])), _e(p.get("file"))] for p in d.get("problems") or []]
    out = (f"<h3>Drivers</h3><p>{d.get('count', 0):,} drivers in the control set that boots; signatures of "
           f"{d.get('verified', 0):,} checked: {verdicts}.</p>")
    if rows:
        out += _table(["driver", "file problem", "file"], rows)
    cats = ev.get("catalogs")
    if cats:
        out += (f"<h3>Catalogs</h3><p>{_e(cats.get('verdict'))}</p><p class='muted'>CatRoot {cats.get('catroot_count', 0):,}"
                f" catalogs, servicing\\Packages {cats.get('packages_count', 0):,}, missing {cats.get('missing_count', 0):,}</p>")
    return out


def _timeline_table(doc: dict) -> str:
    entries = (doc.get("timeline") or {}).get("entries") or []
    shown = entries[-MAX_TABLE_ENTRIES:]
    rows = [[_e(_short(e["time"])), _e(e["kind"]), _e(e["source"]), _e(e["summary"])] for e in reversed(shown)]
    more = (f"<p class='muted'>{len(entries) - len(shown):,} older entries are in the --json output.</p>"
            if len(entries) > len(shown) else "")
    return ("<section><h2>Timeline entries (newest first)</h2>"
            + (_table(["time (UTC)", "kind", "source", "summary"], rows) if rows else "<p class='muted'>none</p>")
            + more + "</section>")


def _limits(doc: dict) -> str:
    findings = doc.get("findings") or []
    parts = ["<section><h2>What this cannot tell</h2><ul>"]
    parts += [f"<li>{_e(n)}</li>" for n in doc.get("cannot_tell") or []]
    parts.append("</ul>")
    if findings:
        parts.append("<h3>Damage and gaps tolerated while reading</h3><ul>")
        parts += [f"<li class='{'warning' if f.get('severity') == 'warning' else 'muted'}'>{_e(f.get('message'))}"
                  + (f" <span class='muted'>({_e(f.get('source'))})</span>" if f.get("source") else "") + "</li>"
                  for f in findings]
        parts.append("</ul>")
    parts.append("</section>")
    return "".join(parts)


def render(doc: dict, *, generated: datetime | None = None) -> str:
    """The whole page for a ``diagnose --json`` document."""
    generated = generated or datetime.now(timezone.utc)
    ok = not doc.get("suspects")
    ev = doc.get("evidence") or {}
    body = [
        _header(doc),
        "<main>",
        f"<div class='verdict{' ok' if ok else ''}'>{_e(doc.get('verdict'))}</div>",
        _suspects(doc),
        _chart(doc),
        _crashes(doc),
        "<section><h2>Evidence</h2>", _dumps(ev), _logs(ev), _registry(ev), _drivers(ev), "</section>",
        _timeline_table(doc),
        _limits(doc),
        f"<p class='muted'>generated by offline-fix on {_e(generated.strftime('%Y-%m-%d %H:%M:%S'))} UTC; read-only.</p>",
        "</main>",
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>offline-fix diagnose: {_e(doc.get('target'))}</title>"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<style>{STYLE}</style></head><body>" + "".join(body) + "</body></html>\n")
