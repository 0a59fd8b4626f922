"""Bug check (stop) codes: number -> Microsoft's name and a short plain-English meaning.

Names and numbers follow Microsoft's "Bug check code reference"
(https://learn.microsoft.com/windows-hardware/drivers/debugger/bug-check-code-reference2) and the
bugcodes.h header of the Windows SDK/WDK; the meanings are our own one-line summaries of those
pages, written for the engineer repairing the machine. Only the codes seen in practice are listed;
any other code is reported as unknown, never guessed.

``FAULT_PARAMETER`` records, for the codes whose documentation says so, which of the four
parameters (0-based) is the address of the instruction that faulted. dumps.py uses it to name the
module that holds that address.
"""

from __future__ import annotations

from dataclasses import dataclass

# Codes with this bit set are the same bug check as the code without it (the "_M" variants, e.g.
# 0x1000007E SYSTEM_THREAD_EXCEPTION_NOT_HANDLED_M); Windows sets it when it writes a minidump.
_M_BIT = 0x10000000

# code: (name, meaning)
BUGCHECKS: dict[int, tuple[str, str]] = {
    0x01: ("APC_INDEX_MISMATCH", "a driver or file system disabled and re-enabled APCs an unequal number of times"),
    0x0A: ("IRQL_NOT_LESS_OR_EQUAL", "kernel code touched invalid or pageable memory at a raised IRQL; usually a driver bug"),
    0x19: ("BAD_POOL_HEADER", "a pool allocation header is damaged; usually a driver writing past its buffer"),
    0x1A: ("MEMORY_MANAGEMENT", "the memory manager found a severe inconsistency (a driver or faulty RAM)"),
    0x1E: ("KMODE_EXCEPTION_NOT_HANDLED", "kernel-mode code raised an exception that nothing handled"),
    0x24: ("NTFS_FILE_SYSTEM", "the NTFS driver failed: volume damage, a storage fault or a file-system filter"),
    0x27: ("RDR_FILE_SYSTEM", "the SMB redirector (network file system) failed"),
    0x3B: ("SYSTEM_SERVICE_EXCEPTION", "an exception while the kernel ran a system call; often a driver"),
    0x3F: ("NO_MORE_SYSTEM_PTES", "the kernel ran out of page-table entries; usually a driver leaking them"),
    0x44: ("MULTIPLE_IRP_COMPLETE_REQUESTS", "a driver completed an I/O request that was already complete"),
    0x4E: ("PFN_LIST_CORRUPT", "the physical page list is damaged (a driver or faulty RAM)"),
    0x50: ("PAGE_FAULT_IN_NONPAGED_AREA", "invalid memory was referenced: a faulty driver, bad RAM, or a damaged driver file"),
    0x51: ("REGISTRY_ERROR", "the registry could not be read or written (hive damage or an I/O error)"),
    0x53: ("NO_BOOT_DEVICE", "no boot device was found"),
    0x5A: ("CRITICAL_SERVICE_FAILED", "a boot-critical driver or service failed to load or start during boot"),
    0x5C: ("HAL_INITIALIZATION_FAILED", "the hardware abstraction layer failed to initialise"),
    0x67: ("CONFIG_INITIALIZATION_FAILED", "the registry could not be initialised at boot (SYSTEM hive unreadable)"),
    0x69: ("IO1_INITIALIZATION_FAILED", "the I/O system failed to initialise (driver configuration or boot drivers)"),
    0x6B: ("PROCESS1_INITIALIZATION_FAILED", "the first system process failed to start (missing or damaged system files)"),
    0x74: ("BAD_SYSTEM_CONFIG_INFO", "the SYSTEM hive is damaged or lacks required data"),
    0x75: ("CANNOT_WRITE_CONFIGURATION", "the registry could not be written (disk full or read-only)"),
    0x77: ("KERNEL_STACK_INPAGE_ERROR", "a kernel stack page could not be read back from disk (disk, storage driver, pagefile)"),
    0x79: ("MISMATCHED_HAL", "the HAL does not match the kernel or the machine"),
    0x7A: ("KERNEL_DATA_INPAGE_ERROR", "kernel data could not be read back from disk (disk, storage driver, pagefile)"),
    0x7B: ("INACCESSIBLE_BOOT_DEVICE", "Windows lost access to the system disk during boot: storage driver disabled or missing, controller change, or a failing filter"),
    0x7C: ("BUGCODE_NDIS_DRIVER", "a network driver failed"),
    0x7E: ("SYSTEM_THREAD_EXCEPTION_NOT_HANDLED", "a system thread raised an exception that nothing handled; parameter 2 is the faulting address, usually in a driver"),
    0x7F: ("UNEXPECTED_KERNEL_MODE_TRAP", "the processor raised a trap the kernel could not handle (double fault, stack overflow, hardware)"),
    0x80: ("NMI_HARDWARE_FAILURE", "a hardware non-maskable interrupt (often sent by the hypervisor or a management board)"),
    0x8E: ("KERNEL_MODE_EXCEPTION_NOT_HANDLED", "kernel-mode code raised an exception that nothing handled"),
    0x9C: ("MACHINE_CHECK_EXCEPTION", "the processor reported a hardware error"),
    0x9F: ("DRIVER_POWER_STATE_FAILURE", "a driver did not finish a power transition (sleep, resume, shutdown) in time"),
    0xA0: ("INTERNAL_POWER_ERROR", "the power manager hit a fatal error (often during hibernation or resume)"),
    0xA5: ("ACPI_BIOS_ERROR", "the firmware's ACPI tables are not usable"),
    0xBE: ("ATTEMPTED_WRITE_TO_READONLY_MEMORY", "a driver wrote to read-only memory"),
    0xC1: ("SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION", "special pool caught a driver damaging memory"),
    0xC2: ("BAD_POOL_CALLER", "a driver made an invalid pool request"),
    0xC4: ("DRIVER_VERIFIER_DETECTED_VIOLATION", "Driver Verifier caught a driver breaking a rule (Verifier is enabled)"),
    0xC5: ("DRIVER_CORRUPTED_EXPOOL", "a driver damaged the pool at a raised IRQL"),
    0xC9: ("DRIVER_VERIFIER_IOMANAGER_VIOLATION", "Driver Verifier caught a driver misusing the I/O manager"),
    0xCA: ("PNP_DETECTED_FATAL_ERROR", "Plug and Play found a fatal error, usually in a driver"),
    0xCE: ("DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS", "a driver unloaded with work still pending"),
    0xD1: ("DRIVER_IRQL_NOT_LESS_OR_EQUAL", "a driver touched invalid or pageable memory at a raised IRQL; parameter 4 is the faulting address"),
    0xD5: ("DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL", "a driver used memory it had already freed"),
    0xD6: ("DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION", "a driver read or wrote past the end of its allocation"),
    0xD8: ("DRIVER_USED_EXCESSIVE_PTES", "a driver used too many page-table entries"),
    0xDA: ("SYSTEM_PTE_MISUSE", "a driver misused page-table entries"),
    0xE2: ("MANUALLY_INITIATED_CRASH", "the crash was forced on purpose (keyboard, NMI or debugger)"),
    0xEA: ("THREAD_STUCK_IN_DEVICE_DRIVER", "a thread (usually the display driver) spun forever waiting for hardware"),
    0xED: ("UNMOUNTABLE_BOOT_VOLUME", "the boot volume could not be mounted (file-system damage or storage driver)"),
    0xEF: ("CRITICAL_PROCESS_DIED", "a critical system process (smss, csrss, wininit, services ...) died"),
    0xF4: ("CRITICAL_OBJECT_TERMINATION", "a critical process or thread terminated"),
    0xF7: ("DRIVER_OVERRAN_STACK_BUFFER", "a driver overran a stack buffer"),
    0xFC: ("ATTEMPTED_EXECUTE_OF_NOEXECUTE_MEMORY", "code tried to run from non-executable memory"),
    0xFE: ("BUGCODE_USB_DRIVER", "a USB driver failed"),
    0x101: ("CLOCK_WATCHDOG_TIMEOUT", "a processor stopped answering clock interrupts (hardware, firmware or hypervisor)"),
    0x109: ("CRITICAL_STRUCTURE_CORRUPTION", "kernel code or data was modified (a driver patching the kernel, or bad RAM)"),
    0x10D: ("WDF_VIOLATION", "a KMDF driver broke a framework rule"),
    0x10E: ("VIDEO_MEMORY_MANAGEMENT_INTERNAL", "the graphics memory manager failed"),
    0x113: ("VIDEO_DXGKRNL_FATAL_ERROR", "the DirectX graphics kernel failed"),
    0x116: ("VIDEO_TDR_FAILURE", "the display driver hung and could not be reset"),
    0x117: ("VIDEO_TDR_TIMEOUT_DETECTED", "the display driver did not respond in time"),
    0x119: ("VIDEO_SCHEDULER_INTERNAL_ERROR", "the GPU scheduler found an inconsistency"),
    0x120: ("BITLOCKER_FATAL_ERROR", "BitLocker hit a fatal error"),
    0x124: ("WHEA_UNCORRECTABLE_ERROR", "the hardware reported an uncorrectable error (processor, memory, bus)"),
    0x127: ("PAGE_NOT_ZERO", "a page that should be zero was not (bad RAM or a driver)"),
    0x12B: ("FAULTY_HARDWARE_CORRUPTED_PAGE", "a single-bit error was found in memory: faulty hardware"),
    0x133: ("DPC_WATCHDOG_VIOLATION", "a deferred procedure call ran too long; usually a storage or network driver"),
    0x135: ("REGISTRY_FILTER_DRIVER_EXCEPTION", "a registry filter driver raised an unhandled exception"),
    0x139: ("KERNEL_SECURITY_CHECK_FAILURE", "the kernel found a damaged critical structure (such as a list entry); usually a driver"),
    0x13A: ("KERNEL_MODE_HEAP_CORRUPTION", "the kernel heap is damaged; usually a driver"),
    0x144: ("BUGCODE_USB3_DRIVER", "a USB 3 driver failed"),
    0x145: ("SECURE_BOOT_VIOLATION", "Secure Boot policy was violated"),
    0x154: ("UNEXPECTED_STORE_EXCEPTION", "the memory-compression store hit an unexpected error (often disk or storage faults)"),
    0x18B: ("SECURE_KERNEL_ERROR", "the secure kernel (virtualisation-based security) failed"),
    0x1CA: ("SYNTHETIC_WATCHDOG_TIMEOUT", "the hypervisor's synthetic watchdog fired: the virtual machine stopped getting processor time"),
    0x1D5: ("DRIVER_PNP_WATCHDOG", "a driver took too long on a Plug and Play operation"),
    0x20001: ("HYPERVISOR_ERROR", "the hypervisor hit a fatal error"),
    0xC0000218: ("STATUS_CANNOT_LOAD_REGISTRY_FILE", "a registry hive could not be loaded (missing or damaged)"),
    0xC000021A: ("WINLOGON_FATAL_ERROR", "a critical user-mode subsystem (winlogon or csrss) failed"),
    0xC0000221: ("STATUS_IMAGE_CHECKSUM_MISMATCH", "a driver or system file is damaged (its checksum does not match)"),
    0xDEADDEAD: ("MANUALLY_INITIATED_CRASH1", "the crash was forced on purpose"),
}

# code -> index (0-based) of the parameter that holds the faulting instruction address, as the
# bug check pages document it.
FAULT_PARAMETER: dict[int, int] = {
    0x0A: 3,  # Parameter 4: address that referenced memory
    0x1E: 1,  # Parameter 2: address where the exception occurred
    0x3B: 1,  # Parameter 2: address of the instruction that caused the exception
    0x50: 2,  # Parameter 3: if non-zero, the instruction address that referenced the bad memory
    0x7E: 1,  # Parameter 2: address where the exception occurred
    0x8E: 1,  # Parameter 2: address where the exception occurred
    0xC5: 3,  # Parameter 4: address that referenced memory
    0xD1: 3,  # Parameter 4: address that referenced memory
}


def format_code(code: int) -> str:
    """Bug check codes are written with eight hex digits: 0x0000007E."""
    return f"0x{code:08X}"


@dataclass(frozen=True)
class BugCheck:
    code: int
    name: str
    meaning: str
    known: bool
    fault_parameter: int | None = None  # 0-based index, see FAULT_PARAMETER

    @property
    def label(self) -> str:
        """``0x0000007E SYSTEM_THREAD_EXCEPTION_NOT_HANDLED``."""
        return f"{format_code(self.code)} {self.name}"

    def to_dict(self) -> dict:
        return {
            "code": self.code,
            "code_hex": format_code(self.code),
            "name": self.name,
            "meaning": self.meaning,
            "known": self.known,
        }


def lookup(code: int) -> BugCheck:
    """The bug check for ``code``; an unknown code comes back with ``known=False``."""
    code &= 0xFFFFFFFF
    if code in BUGCHECKS:
        name, meaning = BUGCHECKS[code]
        return BugCheck(code, name, meaning, True, FAULT_PARAMETER.get(code))
    base = code & ~_M_BIT
    if code & _M_BIT and base in BUGCHECKS:
        name, meaning = BUGCHECKS[base]
        return BugCheck(code, name + "_M", meaning, True, FAULT_PARAMETER.get(base))
    return BugCheck(
        code,
        "UNKNOWN_BUGCHECK",
        f"bug check {format_code(code)} is not in Microsoft's bug check reference as known to offline-fix",
        False,
    )
