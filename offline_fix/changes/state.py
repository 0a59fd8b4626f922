"""The state folder of a target: its journal, its backups and its lock.

Default: ``$XDG_STATE_HOME/offline-fix/<name>-<id>/`` (``~/.local/state`` when unset; Windows:
``%LOCALAPPDATA%\\offline-fix\\state``); ``--backup-dir DIR`` puts it elsewhere. Never inside the
target itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

from offline_fix.errors import Refused
from offline_fix.target import platform


def target_identity(spec: str) -> str:
    real = os.path.realpath(platform.windows_drive_root(spec) or spec)
    try:
        st = os.stat(real)
        if platform.is_block_device(real):
            return f"device:{real}:{st.st_rdev}"
    except OSError:
        pass
    return f"path:{real}"


def state_dir_for(spec: str, backup_dir: str | None = None) -> str:
    identity = target_identity(spec)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(os.path.normpath(spec)) or "target")[:40]
    base = os.path.abspath(backup_dir) if backup_dir else platform.state_home()
    path = os.path.join(base, f"{name}-{digest}")
    real_target = os.path.realpath(platform.windows_drive_root(spec) or spec)
    if os.path.isdir(real_target):
        real_state = os.path.realpath(path)
        if real_state == real_target or real_state.startswith(real_target.rstrip(os.sep) + os.sep):
            raise Refused(f"the backup folder {path} lies inside the target {spec}: choose another with --backup-dir")
    return path


def ensure_state_dir(spec: str, backup_dir: str | None = None) -> str:
    path = state_dir_for(spec, backup_dir)
    os.makedirs(os.path.join(path, "backups"), mode=0o700, exist_ok=True)
    info = os.path.join(path, "target.json")
    if not os.path.exists(info):
        with open(info, "w", encoding="utf-8") as fh:
            json.dump({"target": spec, "identity": target_identity(spec)}, fh, indent=2)
    return path
