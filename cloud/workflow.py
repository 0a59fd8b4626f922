"""The workflow engine the adapters share: recorded idempotent steps, dry-run, the --run command.

- ``Calls`` is the one door every change goes through. It prints the call (to stderr) before it
  is made; under ``--dry-run`` it makes nothing and only collects the calls, for the CLI to print.
- ``Workflow.step(name, fn)`` writes ``started`` to the state file, runs ``fn`` (which must look at
  the real cloud state first and do nothing when the work is already done), then writes ``done``
  with the result. A step already ``done`` is skipped, so a resumed run continues where it stopped.
- ``run_command`` runs the user's ``--run "offline-fix ... {disk}"`` on the located disk.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from typing import Any, Callable, Iterable

from offline_fix.errors import NotFound, OfflineFixError, Refused

from offline_fix.cloud.state import State

PLACEHOLDERS = ("{disk}", "{device}")


class CloudApiError(OfflineFixError):
    """The provider's API refused or failed a call (not a bug in offline-fix); exit code 9."""

    exit_code = 9


class Interrupted(OfflineFixError):
    """Stopped on purpose after a step (``--stop-after``), as a crash would; resume or abort."""

    exit_code = 130


def stop_after(step: str | None) -> Callable[[str], None] | None:
    """A Workflow hook that interrupts the run right after ``step`` is recorded as done: a drill for
    ``rescue --resume`` and ``abort`` (and what the tests use to simulate a crash)."""
    if not step:
        return None

    def hook(name: str) -> None:
        if name == step:
            raise Interrupted(f"stopped after step {name} as asked (--stop-after); "
                              "continue with --resume or roll back with abort")
    return hook


def format_call(name: str, params: dict | None = None) -> str:
    """``ec2.stop_instances(InstanceIds=['i-1'])``: one line, parameters in call order."""
    args = ", ".join(f"{k}={v!r}" for k, v in (params or {}).items())
    return f"{name}({args})"


class Calls:
    """Changes and waits go through here; reads are made directly by the adapters."""

    def __init__(self, dry_run: bool = False, echo: Callable[[str], None] | None = None) -> None:
        self.dry_run = dry_run
        self.planned: list[str] = []
        self.made: list[str] = []
        self._echo = echo or (lambda line: print(line, file=sys.stderr))

    def change(self, label: str, fn: Callable[[], Any], fake: Any = None) -> Any:
        if self.dry_run:
            self.planned.append(label)
            return fake
        self._echo(f"call: {label}")
        result = fn()
        self.made.append(label)
        return result

    def wait(self, label: str, fn: Callable[[], Any]) -> None:
        if self.dry_run:
            self.planned.append(f"wait: {label}")
            return
        self._echo(f"wait: {label}")
        fn()

    def note(self, line: str) -> None:
        self._echo(line)


class Workflow:
    """Runs named steps against a State; ``hook(step_name)`` is called after each finished step
    (tests raise from it to simulate a crash between two steps)."""

    def __init__(self, state: State, calls: Calls, hook: Callable[[str], None] | None = None) -> None:
        self.state = state
        self.calls = calls
        self.hook = hook

    def step(self, name: str, fn: Callable[[], Any]) -> Any:
        rec = self.state.step(name)
        if rec is not None and rec["status"] == "done":
            self.calls.note(f"step {name}: done already")
            return rec.get("result")
        self.state.mark_started(name)
        result = fn()
        if self.calls.dry_run:
            # Nothing happened, so nothing is recorded as done (the state is not saved anyway).
            return result
        self.state.mark_done(name, result)
        if self.hook is not None:
            self.hook(name)
        return result

    def record(self, name: str, result: Any) -> Any:
        """Record a read-only step (describe) that ran before anything was saved: a refusal there
        leaves no state file behind."""
        if not self.state.is_done(name):
            self.state.mark_started(name)
            if not self.calls.dry_run:
                self.state.mark_done(name, result)
        return self.state.step(name).get("result", result)

    def require_phase(self, allowed: Iterable[str], action: str) -> None:
        if self.state.phase not in allowed:
            raise Refused(
                f"cannot {action} a rescue in phase {self.state.phase!r}",
                path=None if self.state.path is None else str(self.state.path),
                expected=sorted(allowed), found=self.state.phase,
            )


def expand_command(command: str, disk: str) -> list[str]:
    """Split ``command`` like a shell would (no shell runs) and put ``disk`` where ``{disk}`` or
    ``{device}`` stands; with neither, ``disk`` becomes the last argument."""
    try:
        argv = shlex.split(command, posix=sys.platform != "win32")
    except ValueError as exc:
        raise Refused(f"cannot parse --run command: {exc}", field="--run") from None
    if not argv:
        raise Refused("empty --run command", field="--run")
    if any(p in arg for arg in argv for p in PLACEHOLDERS):
        out = []
        for arg in argv:
            for p in PLACEHOLDERS:
                arg = arg.replace(p, disk)
            out.append(arg)
        argv = out
    else:
        argv.append(disk)
    if argv[0] == "offline-fix" and shutil.which("offline-fix") is None:
        argv = [sys.executable, "-m", "offline_fix", *argv[1:]]
    return argv


def run_command(argv: list[str], runner: Callable[..., Any] | None = None) -> dict:
    """Run the repair command; its output goes straight to the terminal. Returns what the state
    file records: the argv and the exit code."""
    run = runner or subprocess.run
    try:
        proc = run(argv, check=False)
    except FileNotFoundError:
        raise NotFound("--run command not found", path=argv[0]) from None
    except PermissionError:
        raise Refused("--run command is not executable", path=argv[0]) from None
    return {"argv": argv, "exit_code": proc.returncode}
