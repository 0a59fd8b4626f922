"""The command line itself: help, version, usage errors, reg.exe switch translation."""

from __future__ import annotations

import subprocess
import sys

from offline_fix.cli import main, translate_reg_switches


def test_version(capsys):
    assert main(["--version"]) == 0
    assert "offline-fix" in capsys.readouterr().out


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    assert "inspect" in capsys.readouterr().out


def test_unknown_command_is_usage_error(capsys):
    assert main(["no-such-command"]) == 2
    err = capsys.readouterr().err
    assert "No such command" in err
    assert "Traceback" not in err


def test_reg_switches_translated_but_paths_kept():
    args = ["reg", "add", "/dev/sdc", r"HKLM\SYSTEM\X", "/v", "Start", "/T", "REG_DWORD", "/d", "4", "/f"]
    assert translate_reg_switches(args) == [
        "reg", "add", "/dev/sdc", r"HKLM\SYSTEM\X", "--value", "Start", "--type", "REG_DWORD", "--data", "4", "--force",
    ]


def test_console_script_runs_as_module():
    proc = subprocess.run([sys.executable, "-m", "offline_fix", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert proc.stdout.startswith("offline-fix ")


def test_text_from_a_disk_reaches_the_terminal_inert():
    import io

    from rich.table import Table

    from offline_fix.cli.output import SafeConsole, printable

    assert printable("a\x1b[2Jb\rc\u202ed\te\nf") == "a\\x1b[2Jb\\x0dc\\u202ed\te\nf"
    buf = io.StringIO()
    console = SafeConsole(file=buf, highlight=False)
    table = Table()
    table.add_column("name")
    table.add_row("evil\x1b]0;pwned\x07")
    console.print(table)
    console.print("line \x1b[31mred", markup=False)
    assert "\x1b" not in buf.getvalue() and "\\x1b]0;pwned\\x07" in buf.getvalue()
