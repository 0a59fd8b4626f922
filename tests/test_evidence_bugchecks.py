"""Bug check names. Oracle: Microsoft's "Bug check code reference" (learn.microsoft.com) and bugcodes.h."""

from __future__ import annotations

import re

import pytest

from offline_fix.evidence.bugchecks import BUGCHECKS, FAULT_PARAMETER, format_code, lookup


@pytest.mark.parametrize("code, name", [
    (0x0A, "IRQL_NOT_LESS_OR_EQUAL"),
    (0x1E, "KMODE_EXCEPTION_NOT_HANDLED"),
    (0x3B, "SYSTEM_SERVICE_EXCEPTION"),
    (0x50, "PAGE_FAULT_IN_NONPAGED_AREA"),
    (0x5A, "CRITICAL_SERVICE_FAILED"),
    (0x7B, "INACCESSIBLE_BOOT_DEVICE"),
    (0x7E, "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED"),
    (0x7F, "UNEXPECTED_KERNEL_MODE_TRAP"),
    (0x9F, "DRIVER_POWER_STATE_FAILURE"),
    (0xA0, "INTERNAL_POWER_ERROR"),
    (0xC2, "BAD_POOL_CALLER"),
    (0xC4, "DRIVER_VERIFIER_DETECTED_VIOLATION"),
    (0xD1, "DRIVER_IRQL_NOT_LESS_OR_EQUAL"),
    (0xEF, "CRITICAL_PROCESS_DIED"),
    (0xF4, "CRITICAL_OBJECT_TERMINATION"),
    (0x116, "VIDEO_TDR_FAILURE"),
    (0x124, "WHEA_UNCORRECTABLE_ERROR"),
    (0x133, "DPC_WATCHDOG_VIOLATION"),
    (0x139, "KERNEL_SECURITY_CHECK_FAILURE"),
    (0x13A, "KERNEL_MODE_HEAP_CORRUPTION"),
    (0x154, "UNEXPECTED_STORE_EXCEPTION"),
    (0x1CA, "SYNTHETIC_WATCHDOG_TIMEOUT"),
    (0xC000021A, "WINLOGON_FATAL_ERROR"),
])
def test_documented_names(code, name):
    bc = lookup(code)
    assert bc.known and bc.name == name and bc.meaning


def test_minidump_variants():
    assert lookup(0x1000007E).name == "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED_M"
    assert lookup(0x1000008E).fault_parameter == 1


def test_unknown_code():
    bc = lookup(0x00010001)  # the code in python-evtx's System log: not in Microsoft's reference
    assert not bc.known and bc.name == "UNKNOWN_BUGCHECK"
    assert "0x00010001" in bc.meaning and bc.fault_parameter is None
    assert bc.label == "0x00010001 UNKNOWN_BUGCHECK"


def test_table_is_well_formed():
    assert format_code(0x7E) == "0x0000007E"
    for code, (name, meaning) in BUGCHECKS.items():
        assert re.fullmatch(r"[A-Z][A-Z0-9_]+", name), name
        assert 0 < code <= 0xFFFFFFFF and meaning and not meaning.endswith(".")
    assert set(FAULT_PARAMETER) <= set(BUGCHECKS)
    assert all(0 <= i <= 3 for i in FAULT_PARAMETER.values())
    assert lookup(0x7E).to_dict()["code_hex"] == "0x0000007E"
