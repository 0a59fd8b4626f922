"""The ``offline-fix`` command: one entry point, one sub-module per command group.

Command modules import their heavy dependencies (dissect, boto3, azure ...) inside the
command functions, so that ``offline-fix --help`` and quick commands start fast.
"""

from __future__ import annotations

import os
import sys

import typer

try:  # typer >= 0.26 carries its own copy of click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer uses click itself
    from click.exceptions import ClickException

from offline_fix import __version__
from offline_fix.errors import OfflineFixError

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 10
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="offline-fix",
    help="Repair a broken Windows disk offline: inspect it, diagnose it, fix it, undo.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"offline-fix {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """Repair a broken Windows disk offline.

    TARGET is a mounted Windows volume (a folder or drive letter), a block device, or a disk
    image (raw, .vhd, .vhdx; read-only also vmdk, qcow2, E01). Nothing is written unless a
    write command is given; every write command has --dry-run.
    """


# Command groups register themselves here, one line each: lazy(module, the top-level words it adds).
# main() imports only the module of the command it runs (all of them for --help or an unknown word),
# so that start-up does not pay for every command's imports; --help stays complete and in this order.
_GROUPS: list[tuple[str, tuple[str, ...]]] = []
_LOADED: set[str] = set()
_RANK: dict[int, int] = {}  # id(registered command or group info) -> position of its module in _GROUPS


def lazy(module: str, *words: str) -> None:
    _GROUPS.append((module, words))


lazy("inspect", "inspect")
lazy("reg", "reg")
lazy("journal", "journal", "undo")
lazy("cloud", "cloud", "locate")
lazy("hive", "hive")
lazy("bcd", "bcd")
lazy("drivers", "drivers")
lazy("catroot", "catroot")
lazy("diagnose", "diagnose")
lazy("crashdump", "crashdump")


def load_commands(args: list[str] | None = None) -> typer.Typer:
    """Register the command groups that ``args`` needs (every group when ``args`` is None, names
    no known command, or asks for the root help); returns ``app``."""
    import importlib

    word = next((a for a in args if not a.startswith("-")), None) if args is not None else None
    wanted = [i for i, (_module, words) in enumerate(_GROUPS) if word in words]
    for i in wanted or range(len(_GROUPS)):
        module = _GROUPS[i][0]
        if module in _LOADED:
            continue
        _LOADED.add(module)
        importlib.import_module(f"offline_fix.cli.{module}").register(app)
        for info in app.registered_commands + app.registered_groups:
            _RANK.setdefault(id(info), i)
    app.registered_commands.sort(key=lambda info: _RANK.get(id(info), -1))  # stable: the order of _GROUPS
    app.registered_groups.sort(key=lambda info: _RANK.get(id(info), -1))
    return app


# reg.exe writes switches as /v NAME /t TYPE /d DATA /s /f /ve. Click would take any argument
# that starts with "/" (such as /dev/sdc) for an option if "/" were an option prefix, so the
# exact reg.exe switches are translated to long options before parsing instead.
REG_SWITCHES = {
    "/v": "--value",
    "/ve": "--default-value",
    "/t": "--type",
    "/d": "--data",
    "/s": "--recurse",
    "/f": "--force",
    "/se": "--separator",
}


def translate_reg_switches(args: list[str]) -> list[str]:
    """Map reg.exe-style switches (case-insensitive) to long options; leave other words alone."""
    out = []
    for arg in args:
        out.append(REG_SWITCHES.get(arg.lower(), arg) if arg.startswith("/") else arg)
    return out


def error_line(exc: BaseException) -> str:
    return f"offline-fix: error: {exc}"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code (see README, "Exit codes")."""
    args = translate_reg_switches(list(sys.argv[1:] if argv is None else argv))
    try:
        load_commands(args)
        result = app(args=args, prog_name="offline-fix", standalone_mode=False)
    except OfflineFixError as exc:
        print(error_line(exc), file=sys.stderr)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except ClickException as exc:
        exc.show(file=sys.stderr)
        return EXIT_USAGE
    except typer.Abort:
        print("offline-fix: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("offline-fix: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # a bug: still one line, the traceback only on request
        if os.environ.get("OFFLINE_FIX_DEBUG"):
            raise
        print(
            f"offline-fix: internal error: {type(exc).__name__}: {exc} "
            "(set OFFLINE_FIX_DEBUG=1 for a traceback, and please report it)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    return result if isinstance(result, int) else EXIT_OK
