"""``offline-fix cloud aws|azure|hyperv rescue|restore|status|abort`` and ``offline-fix locate``.

The adapters live in offline_fix.cloud; this module only parses options, builds the SDK clients
(boto3, azure-mgmt-compute, imported inside the commands) and prints results: data to stdout
(one JSON document with --json), progress and API calls to stderr.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from offline_fix.cli.output import emit_json, out
from offline_fix.errors import Refused

EXIT_OK = 0
EXIT_FINDINGS = 1

cloud_app = typer.Typer(help="Move a broken VM's OS disk to a helper VM and back (AWS, Azure, Hyper-V).",
                        no_args_is_help=True)
aws_app = typer.Typer(help="AWS EC2: move the root EBS volume to a helper instance and back.", no_args_is_help=True)
azure_app = typer.Typer(help="Azure: copy the OS disk to a helper VM, then swap the repaired copy in.",
                        no_args_is_help=True)
hyperv_app = typer.Typer(help="Hyper-V host: stop the VM, back up its VHDX, repair the file directly.",
                         no_args_is_help=True)


def register(app: typer.Typer) -> None:
    cloud_app.add_typer(aws_app, name="aws")
    cloud_app.add_typer(azure_app, name="azure")
    cloud_app.add_typer(hyperv_app, name="hyperv")
    app.add_typer(cloud_app, name="cloud")
    app.command("locate")(locate_cmd)


# -- shared options -------------------------------------------------------------------------------
STATE_OPT = typer.Option(..., "--state", help="The rescue's state file (JSON, mode 0600).")
JSON_OPT = typer.Option(False, "--json", help="Print one JSON document to stdout.")
DRY_OPT = typer.Option(False, "--dry-run", help="Print the API calls that would be made; change nothing.")
RESUME_OPT = typer.Option(False, "--resume", help="Continue an interrupted rescue from its state file.")
STOP_OPT = typer.Option(None, "--stop-after", metavar="STEP",
                        help="Drill: stop right after this step (e.g. rescue.detach), as a crash would.")
RUN_OPT = typer.Option(None, "--run", help='Repair command to run once the disk is attached, e.g. '
                       '"offline-fix drivers disable {disk} --driver X" ({disk} = the located disk).')


def _echo(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _load(path: Path, provider: str):
    from offline_fix.cloud.state import State

    state = State.load(path)
    if state.provider != provider:
        raise Refused(f"this state file belongs to a {state.provider} rescue", path=str(path),
                      field="provider", expected=provider, found=state.provider)
    return state


def _new_or_resume(provider: str, path: Path, params: dict, resume: bool, dry_run: bool):
    """A new state (refusing to overwrite one) or, with --resume, the existing one."""
    from offline_fix.cloud.state import State

    if resume:
        state = _load(path, provider)
        for key, value in params.items():
            if value is not None and state.params.get(key) not in (None, value):
                raise Refused("--resume with other parameters than the first run", path=str(path), field=key,
                              expected=state.params.get(key), found=value)
    else:
        if path.exists():
            raise Refused("a state file already exists: continue it with --resume, or roll back with abort",
                          path=str(path))
        state = State.new(provider, params, path)
    if dry_run:
        state.path = None  # --dry-run never writes
    return state


def _rescue(provider: str, key: tuple[str, str | None], state_path: Path | None, params: dict, resume: bool,
            dry_run: bool, json_out: bool, action: Callable[[Any], dict], stop: str | None = None) -> int:
    """Shared by the three ``rescue`` commands: state file (new or resumed), lock, run, print.
    ``key`` is (option name, value) naming the default state file ./offline-fix-PROVIDER-VALUE.json."""
    from offline_fix.cloud.state import StateLock

    if state_path is None:
        option, value = key
        if not value:
            raise Refused(f"give {option} (or --state with --resume)")
        state_path = Path(f"offline-fix-{provider}-{value}.json")
    from offline_fix.cloud.workflow import stop_after

    state = _new_or_resume(provider, state_path, params, resume, dry_run)
    adapter, calls = FACTORIES[provider](state, dry_run, stop_after(stop))
    with StateLock(state.path):
        result = action(adapter)
    return _finish(state, calls, result, json_out)


def _finish(state, calls, result: dict, json_out: bool) -> int:
    if calls.dry_run:
        if json_out:
            emit_json({"dry_run": True, "calls": calls.planned})
        else:
            console = out()
            console.print("dry run: nothing was changed. These calls would be made:", markup=False)
            for line in calls.planned:
                console.print(f"  {line}", soft_wrap=True, markup=False)
        return EXIT_OK
    run = result.get("run")
    code = EXIT_FINDINGS if run and run.get("exit_code") else EXIT_OK
    doc = {**result, "state_file": str(state.path), "notes": state.doc["notes"]}
    if json_out:
        emit_json(doc)
    else:
        _print_mapping(doc)
    return code


def _print_mapping(doc: dict) -> None:
    console = out()
    for key, value in doc.items():
        if value in (None, [], {}):
            continue
        if isinstance(value, list):
            console.print(f"{key}:", soft_wrap=True, markup=False)
            for item in value:
                console.print(f"  - {item}", soft_wrap=True, markup=False)
        elif isinstance(value, dict):
            console.print(f"{key}:", soft_wrap=True, markup=False)
            for k, v in value.items():
                console.print(f"  {k}: {v}", soft_wrap=True, markup=False)
        else:
            console.print(f"{key}: {value}", soft_wrap=True, markup=False)


def _status(state, live: Callable[[], dict] | None, json_out: bool) -> int:
    doc = {
        "provider": state.provider,
        "phase": state.phase,
        "state_file": str(state.path),
        "params": state.params,
        "facts": state.facts,
        "steps": [{k: rec.get(k) for k in ("name", "status", "finished")} for rec in state.doc["steps"]],
        "artifacts": state.doc["artifacts"],
        "notes": state.doc["notes"],
    }
    if live is not None:
        doc["live"] = live()
    pending = [r["name"] for r in state.doc["steps"] if r["status"] != "done"]
    doc["interrupted_step"] = pending[0] if pending else None
    doc["next"] = NEXT_ACTION.get(state.phase, "")
    if json_out:
        emit_json(doc)
    else:
        console = out()
        console.print(f"{state.provider} rescue, phase {state.phase} ({state.path})", soft_wrap=True, markup=False)
        for rec in state.doc["steps"]:
            console.print(f"  {rec['status']:8} {rec['name']}", soft_wrap=True, markup=False)
        _print_mapping({k: doc[k] for k in ("facts", "artifacts", "live", "notes", "interrupted_step", "next")
                        if k in doc})
    return EXIT_OK


NEXT_ACTION = {
    "new": "rescue --resume, or abort",
    "rescuing": "rescue --resume continues; abort rolls back",
    "rescued": "repair the disk on the helper (offline-fix locate finds it), then restore; or abort",
    "restoring": "restore again continues; abort rolls back",
    "restored": "done; check the screenshot / console output",
    "aborting": "abort again continues",
    "aborted": "done; the original disk is back",
}


def _locator(state_doc: dict) -> str:
    from offline_fix.cloud.locate import locate

    return locate(state_doc)["device"]


# -- AWS ------------------------------------------------------------------------------------------
def _ec2(region: str | None):
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    try:
        return boto3.session.Session(region_name=region).client(
            "ec2", config=Config(retries={"mode": "standard", "max_attempts": 3}))
    except BotoCoreError as exc:  # NoRegionError and friends
        raise Refused(f"cannot create the AWS client: {exc} (give --region or set AWS_DEFAULT_REGION)") from None


def _aws(state, dry_run: bool, hook=None):
    from offline_fix.cloud.aws import AwsAdapter
    from offline_fix.cloud.workflow import Calls

    calls = Calls(dry_run=dry_run, echo=_echo)
    region = state.params.get("region") or state.facts.get("region")
    return AwsAdapter(_ec2(region), state, calls=calls, hook=hook), calls


@aws_app.command("rescue")
def aws_rescue(
    instance: Optional[str] = typer.Option(None, "--instance", help="The broken instance (i-...)."),
    helper: Optional[str] = typer.Option(None, "--helper", help="The helper instance, same Availability Zone."),
    state_path: Optional[Path] = typer.Option(None, "--state", help="State file (default: ./offline-fix-aws-INSTANCE.json)."),
    region: Optional[str] = typer.Option(None, "--region", help="AWS region (default: from the environment or profile)."),
    no_snapshot: bool = typer.Option(False, "--no-snapshot", help="Skip the backup snapshot (not recommended)."),
    force_stop: bool = typer.Option(False, "--force-stop", help="Force the stop (no OS shutdown)."),
    run: Optional[str] = RUN_OPT,
    resume: bool = RESUME_OPT,
    stop: Optional[str] = STOP_OPT,
    dry_run: bool = DRY_OPT,
    json_out: bool = JSON_OPT,
) -> int:
    """Stop the instance, snapshot its root volume, attach the volume to the helper."""
    return _rescue("aws", ("--instance", instance), state_path,
                   {"instance": instance, "helper": helper, "region": region}, resume, dry_run, json_out,
                   lambda a: a.rescue(instance, helper, snapshot=not no_snapshot, force_stop=force_stop, run=run,
                                      locate=_locator), stop)


@aws_app.command("restore")
def aws_restore(
    state_path: Path = STATE_OPT,
    settle: float = typer.Option(0, "--settle", help="Seconds to wait after the start before the screenshot."),
    dry_run: bool = DRY_OPT,
    json_out: bool = JSON_OPT,
) -> int:
    """Detach the volume from the helper, attach it back as the root device, start the instance."""
    return _run_loaded("aws", state_path, dry_run, json_out, lambda a: a.restore(settle=settle))


# -- Azure ----------------------------------------------------------------------------------------
def _compute(subscription: str, endpoint: str | None):
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.compute import ComputeManagementClient

    kwargs = {"base_url": endpoint} if endpoint else {}
    return ComputeManagementClient(DefaultAzureCredential(), subscription, **kwargs)


def _download(url: str) -> bytes:
    from offline_fix.cloud.azure import download_blob

    return download_blob(url)


def _azure(state, dry_run: bool, hook=None):
    from offline_fix.cloud.azure import AzureAdapter
    from offline_fix.cloud.workflow import Calls

    sub = state.params.get("subscription") or os.environ.get("AZURE_SUBSCRIPTION_ID")
    if not sub:
        raise Refused("give --subscription or set AZURE_SUBSCRIPTION_ID")
    calls = Calls(dry_run=dry_run, echo=_echo)
    compute = _compute(sub, state.params.get("endpoint"))
    return AzureAdapter(compute, state, calls=calls, hook=hook, download=_download), calls


@azure_app.command("rescue")
def azure_rescue(
    resource_group: Optional[str] = typer.Option(None, "--resource-group", "-g", help="Resource group of the broken VM."),
    vm: Optional[str] = typer.Option(None, "--vm", help="The broken VM."),
    helper: Optional[str] = typer.Option(None, "--helper", help="The helper VM (same region and zone)."),
    helper_rg: Optional[str] = typer.Option(None, "--helper-resource-group", help="Its resource group (default: the VM's)."),
    subscription: Optional[str] = typer.Option(None, "--subscription", help="Subscription id (default: AZURE_SUBSCRIPTION_ID)."),
    endpoint: Optional[str] = typer.Option(None, "--arm-endpoint", help="Resource Manager URL (sovereign clouds, Azure Stack)."),
    state_path: Optional[Path] = typer.Option(None, "--state", help="State file (default: ./offline-fix-azure-VM.json)."),
    run: Optional[str] = RUN_OPT,
    resume: bool = RESUME_OPT,
    stop: Optional[str] = STOP_OPT,
    dry_run: bool = DRY_OPT,
    json_out: bool = JSON_OPT,
) -> int:
    """Snapshot the OS disk, make a disk from it, attach that copy to the helper."""
    params = {"resource_group": resource_group, "vm": vm, "helper": helper, "helper_resource_group": helper_rg,
              "subscription": subscription or os.environ.get("AZURE_SUBSCRIPTION_ID"), "endpoint": endpoint}
    return _rescue("azure", ("--vm", vm), state_path, params, resume, dry_run, json_out,
                   lambda a: a.rescue(resource_group, vm, helper, helper_rg, run=run, locate=_locator), stop)


@azure_app.command("restore")
def azure_restore(state_path: Path = STATE_OPT, dry_run: bool = DRY_OPT, json_out: bool = JSON_OPT) -> int:
    """Detach the copy from the helper, deallocate the VM, swap its OS disk to the copy, start it."""
    return _run_loaded("azure", state_path, dry_run, json_out, lambda a: a.restore())


# -- Hyper-V --------------------------------------------------------------------------------------
def _powershell():
    from offline_fix.cloud.hyperv import default_runner

    return default_runner


def _hyperv(state, dry_run: bool, hook=None):
    from offline_fix.cloud.hyperv import HyperVAdapter
    from offline_fix.cloud.workflow import Calls

    calls = Calls(dry_run=dry_run, echo=_echo)
    return HyperVAdapter(state, runner=_powershell(), calls=calls, hook=hook), calls


@hyperv_app.command("rescue")
def hyperv_rescue(
    vm: Optional[str] = typer.Option(None, "--vm", help="The broken VM's name."),
    disk: Optional[str] = typer.Option(None, "--disk", help="The VHDX to repair, when the OS disk is not IDE/SCSI 0:0."),
    backup_dir: Optional[str] = typer.Option(None, "--backup-dir", help="Folder for the VHDX backup (default: beside it)."),
    turn_off: bool = typer.Option(False, "--turn-off", help="Power off instead of a guest shutdown."),
    state_path: Optional[Path] = typer.Option(None, "--state", help="State file (default: ./offline-fix-hyperv-VM.json)."),
    run: Optional[str] = RUN_OPT,
    resume: bool = RESUME_OPT,
    stop: Optional[str] = STOP_OPT,
    dry_run: bool = DRY_OPT,
    json_out: bool = JSON_OPT,
) -> int:
    """Stop the VM and back up its VHDX; --run repairs the VHDX file directly ({disk} = its path)."""
    return _rescue("hyperv", ("--vm", vm), state_path, {"vm": vm, "disk": disk, "backup_dir": backup_dir}, resume,
                   dry_run, json_out,
                   lambda a: a.rescue(vm, disk=disk, backup_dir=backup_dir, turn_off=turn_off, run=run), stop)


@hyperv_app.command("restore")
def hyperv_restore(state_path: Path = STATE_OPT, dry_run: bool = DRY_OPT, json_out: bool = JSON_OPT) -> int:
    """Start the VM on its repaired VHDX."""
    return _run_loaded("hyperv", state_path, dry_run, json_out, lambda a: a.restore())


FACTORIES: dict[str, Callable[..., tuple[Any, Any]]] = {"aws": _aws, "azure": _azure, "hyperv": _hyperv}


def _run_loaded(provider: str, state_path: Path, dry_run: bool, json_out: bool, action: Callable[[Any], dict]) -> int:
    from offline_fix.cloud.state import StateLock

    state = _load(state_path, provider)
    if dry_run:
        state.path = None
    adapter, calls = FACTORIES[provider](state, dry_run)
    with StateLock(state.path):
        result = action(adapter)
    return _finish(state, calls, result, json_out)


def _status_loaded(provider: str, state_path: Path, offline: bool, json_out: bool) -> int:
    state = _load(state_path, provider)
    live = None
    if not offline:
        adapter, _ = FACTORIES[provider](state, False)
        live = adapter.live
    return _status(state, live, json_out)


def _add_abort_and_status(group: typer.Typer, provider: str, what: str) -> None:
    def abort(state_path: Path = STATE_OPT, dry_run: bool = DRY_OPT, json_out: bool = JSON_OPT) -> int:
        return _run_loaded(provider, state_path, dry_run, json_out, lambda a: a.abort())

    def status(
        state_path: Path = STATE_OPT,
        offline: bool = typer.Option(False, "--offline", help="Only the state file; no API call."),
        json_out: bool = JSON_OPT,
    ) -> int:
        return _status_loaded(provider, state_path, offline, json_out)

    abort.__doc__ = f"Put {what} back, whatever step the rescue reached."
    status.__doc__ = "Where the rescue stands: the steps done, and the disks and VMs now."
    group.command("abort")(abort)
    group.command("status")(status)


_add_abort_and_status(aws_app, "aws", "the original root volume")
_add_abort_and_status(azure_app, "azure", "the original OS disk")
_add_abort_and_status(hyperv_app, "hyperv", "the original VHDX (from the backup)")


# -- locate ---------------------------------------------------------------------------------------
def locate_cmd(
    state_path: Path = STATE_OPT,
    json_out: bool = JSON_OPT,
) -> int:
    """On the helper: print the device of the disk the rescue attached (or the VHDX path)."""
    from offline_fix.cloud.locate import locate
    from offline_fix.cloud.state import State

    state = State.load(state_path)
    found = locate(state.doc)
    if json_out:
        emit_json(found)
    else:
        print(found["device"])
        _echo(f"found by: {found['how']}")
    return EXIT_OK
