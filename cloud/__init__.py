"""Cloud adapters: move a broken VM's OS disk to a helper VM and back (AWS, Azure, Hyper-V).

Installed as ``offline_fix.cloud`` (pyproject.toml maps the ``cloud/`` folder to that name), so it
never claims a generic top-level ``cloud`` import. The adapters never parse a disk: they only move
disks through the provider's API and record every step in a resumable state file (state.py).
SDK clients (boto3, azure-mgmt-compute) are always injected; nothing here creates one at import.
"""
