"""The Boot Configuration Data store: objects and elements over a registry hive, with bcdedit's names.

A BCD store is a hive: ``Objects\\{GUID}\\Description\\Type`` (REG_DWORD, the object type) and
``Objects\\{GUID}\\Elements\\<8 hex digits>\\Element`` (one value per element; the key name is the
element type). Microsoft documents element and object types in the BCD WMI provider reference:
- BcdElementType (class, format, subtype bit fields):
  https://learn.microsoft.com/previous-versions/windows/desktop/bcd/bcdelementtype
- BcdLibraryElementTypes, BcdBootMgrElementTypes, BcdOSLoaderElementTypes, BcdResumeElementTypes,
  BcdMemDiagElementTypes, BcdDeviceObjectElementTypes, BcdLibrary_SafeBoot, BcdOSLoader_NxPolicy,
  BcdOSLoader_PAEPolicy, BcdOSLoader_BootStatusPolicy:
  https://learn.microsoft.com/previous-versions/windows/desktop/bcd/bcd-enumerations
- BcdObject.Type (object, image and application types):
  https://learn.microsoft.com/previous-versions/windows/desktop/bcd/bcdobject
- well-known identifiers ({bootmgr}, {globalsettings} ...; `bcdedit /? ID`):
  https://learn.microsoft.com/windows-hardware/drivers/devtest/boot-options-identifiers
Element data as Windows stores it (checked against the real UEFI store in ../shared/realdata,
regipy/BCD.xz): boolean REG_BINARY 1 byte, integer REG_BINARY 8 bytes little-endian, integer list
REG_BINARY 8 bytes per item, string REG_SZ, object REG_SZ "{guid}", object list REG_MULTI_SZ,
device REG_BINARY (a binary layout Microsoft does not document; shown, never written).

{default} is the object named by {bootmgr}'s DefaultObject element (0x23000003). {current}
means "the system that is running": there is none offline, so it is refused with that reason.
"""

from __future__ import annotations

import re
import struct
import uuid
from dataclasses import dataclass, field

from offline_fix.errors import CorruptInput, NotFound, Refused, Unsupported
from offline_fix.hive.structures import REG_BINARY, REG_DWORD, REG_MULTI_SZ, REG_SZ, type_name

# -- structures: object and element types ----------------------------------------------------------

OBJECTS_KEY = "Objects"
DESCRIPTION_KEY = "Description"
TYPE_VALUE = "Type"
ELEMENTS_KEY = "Elements"
ELEMENT_VALUE = "Element"

# BcdElementType.Format (bits 24-27) and .Class (bits 28-31)
FORMAT_DEVICE, FORMAT_STRING, FORMAT_OBJECT, FORMAT_OBJECT_LIST = 1, 2, 3, 4
FORMAT_INTEGER, FORMAT_BOOLEAN, FORMAT_INTEGER_LIST = 5, 6, 7
FORMAT_NAMES = {FORMAT_DEVICE: "device", FORMAT_STRING: "string", FORMAT_OBJECT: "object",
                FORMAT_OBJECT_LIST: "object list", FORMAT_INTEGER: "integer", FORMAT_BOOLEAN: "boolean",
                FORMAT_INTEGER_LIST: "integer list"}
CLASS_LIBRARY, CLASS_APPLICATION, CLASS_DEVICE, CLASS_OEM = 1, 2, 3, 5
# How each format is stored (registry type), from the real store.
FORMAT_REG_TYPE = {FORMAT_DEVICE: REG_BINARY, FORMAT_STRING: REG_SZ, FORMAT_OBJECT: REG_SZ,
                   FORMAT_OBJECT_LIST: REG_MULTI_SZ, FORMAT_INTEGER: REG_BINARY, FORMAT_BOOLEAN: REG_BINARY,
                   FORMAT_INTEGER_LIST: REG_BINARY}
U64 = struct.Struct("<Q")
assert U64.size == 8


def element_format(element_id: int) -> int:
    return (element_id >> 24) & 0xF


def element_class(element_id: int) -> int:
    return (element_id >> 28) & 0xF


# BcdObject.Type: object type (bits 28-31: 1 application, 2 inherit, 3 device); for applications
# the image type (bits 20-23) and application type (bits 0-19); for inherit objects bits 20-23
# say who may inherit (1 any object, 2 applications of the type in bits 0-19, 3 devices).
OBJECT_APPLICATION, OBJECT_INHERIT, OBJECT_DEVICE = 1, 2, 3
IMAGE_TYPES = {1: "firmware application", 2: "Windows boot application", 3: "legacy loader", 4: "real-mode code"}
APPLICATION_TYPES = {1: "Firmware Boot Manager", 2: "Windows Boot Manager", 3: "Windows Boot Loader",
                     4: "Resume from Hibernate", 5: "Windows Memory Tester", 6: "Windows Legacy OS Loader",
                     7: "Windows Setup Loader", 8: "Boot Sector", 9: "Startup Module", 10: "Generic Application"}
APP_FWBOOTMGR, APP_BOOTMGR, APP_OSLOADER, APP_RESUME, APP_MEMDIAG = 1, 2, 3, 4, 5
OSLOADER_TYPE = 0x10200003  # a Windows Boot Loader (winload)

# Element scopes: library elements apply to every object; application elements (class 2) mean
# different things per application type; device elements (class 3) belong to device objects.
SCOPE_LIBRARY, SCOPE_BOOTMGR, SCOPE_OSLOADER = "library", "bootmgr", "osloader"
SCOPE_RESUME, SCOPE_MEMDIAG, SCOPE_DEVICE = "resume", "memdiag", "device"
APP_SCOPES = {APP_FWBOOTMGR: SCOPE_BOOTMGR, APP_BOOTMGR: SCOPE_BOOTMGR, APP_OSLOADER: SCOPE_OSLOADER,
              APP_RESUME: SCOPE_RESUME, APP_MEMDIAG: SCOPE_MEMDIAG}

# Well-known identifiers (`bcdedit /? ID`; each checked against Microsoft's BCD documentation and
# samples, and against the real store for those it holds).
WELL_KNOWN = {
    "{bootmgr}": "{9dea862c-5cdd-4e70-acc1-f32b344d4795}",
    "{fwbootmgr}": "{a5a30fa2-3d06-4e9f-b5f4-a01df9d1fcba}",
    "{memdiag}": "{b2721d73-1db4-4c62-bf78-c548a880142d}",
    "{ntldr}": "{466f5a88-0af2-4f76-9038-095b170dc21c}",
    "{dbgsettings}": "{4636856e-540f-4170-a130-a84776f4c654}",
    "{emssettings}": "{0ce4991b-e6b3-4b16-b23c-5e0d9250e5d9}",
    "{badmemory}": "{5189b25c-5558-4bf2-bca4-289b11bd29e2}",
    "{globalsettings}": "{7ea2e1ac-2e61-4728-aaa3-896d9d0a9f0e}",
    "{bootloadersettings}": "{6efb52bf-1766-41db-a6b3-0ee5eff72bd7}",
    "{resumeloadersettings}": "{1afa9c49-16ab-4a5c-901b-212802da9460}",
    "{hypervisorsettings}": "{7ff607e0-4395-11db-b0de-0800200c9a66}",
    "{ramdiskoptions}": "{ae5534e0-a924-466c-b836-758539a3ee3a}",
}
ALIASES = {"{legacy}": "{ntldr}"}
# bcdedit's headings for the well-known settings objects
SETTINGS_TITLES = {WELL_KNOWN[name]: title for name, title in (
    ("{dbgsettings}", "Debugger Settings"), ("{emssettings}", "EMS Settings"), ("{badmemory}", "RAM Defects"),
    ("{globalsettings}", "Global Settings"), ("{bootloadersettings}", "Boot Loader Settings"),
    ("{resumeloadersettings}", "Resume Loader Settings"), ("{hypervisorsettings}", "Hypervisor Settings"),
    ("{ramdiskoptions}", "Device options"))}
GUID_NAMES = {guid: name for name, guid in WELL_KNOWN.items()}
CURRENT_GUID = "{fa926493-6f1c-4193-a414-58f0b2456d1e}"  # {current}: virtual, the running system
DEFAULT_GUID = "{1cae1eb7-a0df-4d4d-9851-4860e34ef535}"  # {default}: virtual, via DefaultObject


@dataclass(frozen=True)
class ElementType:
    id: int
    scope: str
    name: str  # bcdedit's name
    ms_name: str  # Microsoft's enumeration name
    values: tuple[tuple[str, int], ...] = ()  # names of integer values, as bcdedit takes them

    @property
    def format(self) -> int:
        return element_format(self.id)

    @property
    def key_name(self) -> str:
        return f"{self.id:08x}"

    def value_name(self, number: int) -> str | None:
        for name, value in self.values:
            if value == number:
                return name
        return None


SAFEBOOT = (("Minimal", 0), ("Network", 1), ("DsRepair", 2))  # BcdLibrary_SafeBoot
BOOT_STATUS_POLICY = (("DisplayAllFailures", 0), ("IgnoreAllFailures", 1), ("IgnoreShutdownFailures", 2),
                      ("IgnoreBootFailures", 3), ("IgnoreCheckpointFailures", 4), ("DisplayShutdownFailures", 5),
                      ("DisplayBootFailures", 6), ("DisplayCheckpointFailures", 7))  # BcdOSLoader_BootStatusPolicy
NX_POLICY = (("OptIn", 0), ("OptOut", 1), ("AlwaysOff", 2), ("AlwaysOn", 3))  # BcdOSLoader_NxPolicy
PAE_POLICY = (("Default", 0), ("ForceEnable", 1), ("ForceDisable", 2))  # BcdOSLoader_PAEPolicy
BOOT_MENU_POLICY = (("Legacy", 0), ("Standard", 1))
DEBUGGER_TYPE = (("Serial", 0), ("1394", 1), ("USB", 2), ("Net", 3), ("Local", 4))  # BcdLibrary_DebuggerType
HYPERVISOR_LAUNCH = (("Off", 0), ("Auto", 1))
BOOT_UX = (("Disabled", 0), ("Basic", 1), ("Standard", 2))
DRIVER_LOAD_FAILURE = (("Fatal", 0), ("UseErrorControl", 1))

_L, _B, _O, _R, _M, _D = SCOPE_LIBRARY, SCOPE_BOOTMGR, SCOPE_OSLOADER, SCOPE_RESUME, SCOPE_MEMDIAG, SCOPE_DEVICE
ELEMENT_TYPES: tuple[ElementType, ...] = (
    # BcdLibraryElementTypes
    ElementType(0x11000001, _L, "device", "BcdLibraryDevice_ApplicationDevice"),
    ElementType(0x12000002, _L, "path", "BcdLibraryString_ApplicationPath"),
    ElementType(0x12000004, _L, "description", "BcdLibraryString_Description"),
    ElementType(0x12000005, _L, "locale", "BcdLibraryString_PreferredLocale"),
    ElementType(0x14000006, _L, "inherit", "BcdLibraryObjectList_InheritedObjects"),
    ElementType(0x15000007, _L, "truncatememory", "BcdLibraryInteger_TruncatePhysicalMemory"),
    ElementType(0x14000008, _L, "recoverysequence", "BcdLibraryObjectList_RecoverySequence"),
    ElementType(0x16000009, _L, "recoveryenabled", "BcdLibraryBoolean_AutoRecoveryEnabled"),
    ElementType(0x1700000A, _L, "badmemorylist", "BcdLibraryIntegerList_BadMemoryList"),
    ElementType(0x1600000B, _L, "badmemoryaccess", "BcdLibraryBoolean_AllowBadMemoryAccess"),
    ElementType(0x1500000C, _L, "firstmegabytepolicy", "BcdLibraryInteger_FirstMegabytePolicy"),
    ElementType(0x16000010, _L, "bootdebug", "BcdLibraryBoolean_DebuggerEnabled"),
    ElementType(0x15000011, _L, "debugtype", "BcdLibraryInteger_DebuggerType", DEBUGGER_TYPE),
    ElementType(0x15000012, _L, "debugaddress", "BcdLibraryInteger_SerialDebuggerPortAddress"),
    ElementType(0x15000013, _L, "debugport", "BcdLibraryInteger_SerialDebuggerPort"),
    ElementType(0x15000014, _L, "baudrate", "BcdLibraryInteger_SerialDebuggerBaudRate"),
    ElementType(0x15000015, _L, "channel", "BcdLibraryInteger_1394DebuggerChannel"),
    ElementType(0x12000016, _L, "targetname", "BcdLibraryString_UsbDebuggerTargetName"),
    ElementType(0x16000017, _L, "noumex", "BcdLibraryBoolean_DebuggerIgnoreUsermodeExceptions"),
    ElementType(0x15000018, _L, "debugstart", "BcdLibraryInteger_DebuggerStartPolicy"),
    ElementType(0x12000019, _L, "busparams", "BcdLibraryString_DebuggerBusParameters"),
    ElementType(0x16000020, _L, "bootems", "BcdLibraryBoolean_EmsEnabled"),
    ElementType(0x15000022, _L, "emsport", "BcdLibraryInteger_EmsPort"),
    ElementType(0x15000023, _L, "emsbaudrate", "BcdLibraryInteger_EmsBaudRate"),
    ElementType(0x12000030, _L, "loadoptions", "BcdLibraryString_LoadOptionsString"),
    ElementType(0x16000040, _L, "advancedoptions", "BcdLibraryBoolean_DisplayAdvancedOptions"),
    ElementType(0x16000041, _L, "optionsedit", "BcdLibraryBoolean_DisplayOptionsEdit"),
    ElementType(0x11000043, _L, "bsdlogdevice", "BcdLibraryDevice_BsdLogDevice"),
    ElementType(0x12000044, _L, "bsdlogpath", "BcdLibraryString_BsdLogPath"),
    ElementType(0x16000046, _L, "graphicsmodedisabled", "BcdLibraryBoolean_GraphicsModeDisabled"),
    ElementType(0x15000047, _L, "configaccesspolicy", "BcdLibraryInteger_ConfigAccessPolicy"),
    ElementType(0x16000048, _L, "nointegritychecks", "BcdLibraryBoolean_DisableIntegrityChecks"),
    ElementType(0x16000049, _L, "testsigning", "BcdLibraryBoolean_AllowPrereleaseSignatures"),
    ElementType(0x1200004A, _L, "fontpath", "BcdLibraryString_FontPath"),
    ElementType(0x1500004B, _L, "integrityservices", "BcdLibraryInteger_SiPolicy"),
    ElementType(0x16000050, _L, "extendedinput", "BcdLibraryBoolean_ConsoleExtendedInput"),
    ElementType(0x15000052, _L, "graphicsresolution", "BcdLibraryInteger_GraphicsResolution"),
    ElementType(0x16000053, _L, "restartonfailure", "BcdLibraryBoolean_RestartOnFailure"),
    ElementType(0x16000054, _L, "highestmode", "BcdLibraryBoolean_GraphicsForceHighestMode"),
    ElementType(0x16000060, _L, "isolatedcontext", "BcdLibraryBoolean_IsolatedExecutionContext"),
    ElementType(0x15000065, _L, "displaymessage", "BcdLibraryInteger_DisplayMessage"),
    ElementType(0x15000066, _L, "displaymessageoverride", "BcdLibraryInteger_DisplayMessageOverride"),
    ElementType(0x1600006C, _L, "bootuxdisabled", "BcdLibraryBoolean_BootUxDisable"),
    ElementType(0x16000074, _L, "bootshutdowndisabled", "BcdLibraryBoolean_BootShutdownDisabled"),
    ElementType(0x17000077, _L, "allowedinmemorysettings", "BcdLibraryIntegerList_AllowedInMemorySettings"),
    ElementType(0x16000079, _L, "forcefipscrypto", "BcdLibraryBoolean_ForceFipsCrypto"),
    # BcdBootMgrElementTypes
    ElementType(0x24000001, _B, "displayorder", "BcdBootMgrObjectList_DisplayOrder"),
    ElementType(0x24000002, _B, "bootsequence", "BcdBootMgrObjectList_BootSequence"),
    ElementType(0x23000003, _B, "default", "BcdBootMgrObject_DefaultObject"),
    ElementType(0x25000004, _B, "timeout", "BcdBootMgrInteger_Timeout"),
    ElementType(0x26000005, _B, "resume", "BcdBootMgrBoolean_AttemptResume"),
    ElementType(0x23000006, _B, "resumeobject", "BcdBootMgrObject_ResumeObject"),
    ElementType(0x24000010, _B, "toolsdisplayorder", "BcdBootMgrObjectList_ToolsDisplayOrder"),
    ElementType(0x26000020, _B, "displaybootmenu", "BcdBootMgrBoolean_DisplayBootMenu"),
    ElementType(0x26000021, _B, "noerrordisplay", "BcdBootMgrBoolean_NoErrorDisplay"),
    ElementType(0x21000022, _B, "bcddevice", "BcdBootMgrDevice_BcdDevice"),
    ElementType(0x22000023, _B, "bcdfilepath", "BcdBootMgrString_BcdFilePath"),
    ElementType(0x26000028, _B, "processcustomactionsfirst", "BcdBootMgrBoolean_ProcessCustomActionsFirst"),
    ElementType(0x27000030, _B, "customactions", "BcdBootMgrIntegerList_CustomActionsList"),
    ElementType(0x26000031, _B, "persistbootsequence", "BcdBootMgrBoolean_PersistBootSequence"),
    # BcdOSLoaderElementTypes
    ElementType(0x21000001, _O, "osdevice", "BcdOSLoaderDevice_OSDevice"),
    ElementType(0x22000002, _O, "systemroot", "BcdOSLoaderString_SystemRoot"),
    ElementType(0x23000003, _O, "resumeobject", "BcdOSLoaderObject_AssociatedResumeObject"),
    ElementType(0x26000010, _O, "detecthal", "BcdOSLoaderBoolean_DetectKernelAndHal"),
    ElementType(0x22000011, _O, "kernel", "BcdOSLoaderString_KernelPath"),
    ElementType(0x22000012, _O, "hal", "BcdOSLoaderString_HalPath"),
    ElementType(0x22000013, _O, "dbgtransport", "BcdOSLoaderString_DbgTransportPath"),
    ElementType(0x25000020, _O, "nx", "BcdOSLoaderInteger_NxPolicy", NX_POLICY),
    ElementType(0x25000021, _O, "pae", "BcdOSLoaderInteger_PAEPolicy", PAE_POLICY),
    ElementType(0x26000022, _O, "winpe", "BcdOSLoaderBoolean_WinPEMode"),
    ElementType(0x26000024, _O, "nocrashautoreboot", "BcdOSLoaderBoolean_DisableCrashAutoReboot"),
    ElementType(0x26000025, _O, "lastknowngood", "BcdOSLoaderBoolean_UseLastGoodSettings"),
    ElementType(0x26000027, _O, "osltestsigning", "BcdOSLoaderBoolean_AllowPrereleaseSignatures"),
    ElementType(0x26000030, _O, "nolowmem", "BcdOSLoaderBoolean_NoLowMemory"),
    ElementType(0x25000031, _O, "removememory", "BcdOSLoaderInteger_RemoveMemory"),
    ElementType(0x25000032, _O, "increaseuserva", "BcdOSLoaderInteger_IncreaseUserVa"),
    ElementType(0x26000040, _O, "vga", "BcdOSLoaderBoolean_UseVgaDriver"),
    ElementType(0x26000041, _O, "quietboot", "BcdOSLoaderBoolean_DisableBootDisplay"),
    ElementType(0x26000042, _O, "novesa", "BcdOSLoaderBoolean_DisableVesaBios"),
    ElementType(0x26000043, _O, "novga", "BcdOSLoaderBoolean_DisableVgaMode"),
    ElementType(0x25000050, _O, "clustermodeaddressing", "BcdOSLoaderInteger_ClusterModeAddressing"),
    ElementType(0x26000051, _O, "usephysicaldestination", "BcdOSLoaderBoolean_UsePhysicalDestination"),
    ElementType(0x25000052, _O, "restrictapiccluster", "BcdOSLoaderInteger_RestrictApicCluster"),
    ElementType(0x26000054, _O, "uselegacyapicmode", "BcdOSLoaderBoolean_UseLegacyApicMode"),
    ElementType(0x25000055, _O, "x2apicpolicy", "BcdOSLoaderInteger_X2ApicPolicy"),
    ElementType(0x26000060, _O, "onecpu", "BcdOSLoaderBoolean_UseBootProcessorOnly"),
    ElementType(0x25000061, _O, "numproc", "BcdOSLoaderInteger_NumberOfProcessors"),
    ElementType(0x26000062, _O, "maxproc", "BcdOSLoaderBoolean_ForceMaximumProcessors"),
    ElementType(0x25000063, _O, "configflags", "BcdOSLoaderInteger_ProcessorConfigurationFlags"),
    ElementType(0x25000080, _O, "safeboot", "BcdOSLoaderInteger_SafeBoot", SAFEBOOT),
    ElementType(0x26000081, _O, "safebootalternateshell", "BcdOSLoaderBoolean_SafeBootAlternateShell"),
    ElementType(0x26000090, _O, "bootlog", "BcdOSLoaderBoolean_BootLogInitialization"),
    ElementType(0x26000091, _O, "sos", "BcdOSLoaderBoolean_VerboseObjectLoadMode"),
    ElementType(0x260000A0, _O, "debug", "BcdOSLoaderBoolean_KernelDebuggerEnabled"),
    ElementType(0x260000A1, _O, "halbreakpoint", "BcdOSLoaderBoolean_DebuggerHalBreakpoint"),
    ElementType(0x260000A2, _O, "useplatformclock", "BcdOSLoaderBoolean_UsePlatformClock"),
    ElementType(0x260000A3, _O, "forcelegacyplatform", "BcdOSLoaderBoolean_ForceLegacyPlatform"),
    ElementType(0x250000A6, _O, "tscsyncpolicy", "BcdOSLoaderInteger_TscSyncPolicy"),
    ElementType(0x260000B0, _O, "ems", "BcdOSLoaderBoolean_EmsEnabled"),
    ElementType(0x250000C1, _O, "driverloadfailurepolicy", "BcdOSLoaderInteger_DriverLoadFailurePolicy",
                DRIVER_LOAD_FAILURE),
    ElementType(0x250000C2, _O, "bootmenupolicy", "BcdOSLoaderInteger_BootMenuPolicy", BOOT_MENU_POLICY),
    ElementType(0x260000C3, _O, "onetimeadvancedoptions", "BcdOSLoaderBoolean_AdvancedOptionsOneTime"),
    ElementType(0x250000E0, _O, "bootstatuspolicy", "BcdOSLoaderInteger_BootStatusPolicy", BOOT_STATUS_POLICY),
    ElementType(0x260000E1, _O, "disableelamdrivers", "BcdOSLoaderBoolean_DisableElamDrivers"),
    ElementType(0x250000F0, _O, "hypervisorlaunchtype", "BcdOSLoaderInteger_HypervisorLaunchType",
                HYPERVISOR_LAUNCH),
    ElementType(0x260000F2, _O, "hypervisordebug", "BcdOSLoaderBoolean_HypervisorDebuggerEnabled"),
    ElementType(0x250000F3, _O, "hypervisordebugtype", "BcdOSLoaderInteger_HypervisorDebuggerType",
                DEBUGGER_TYPE),
    ElementType(0x250000F4, _O, "hypervisordebugport", "BcdOSLoaderInteger_HypervisorDebuggerPortNumber"),
    ElementType(0x250000F5, _O, "hypervisorbaudrate", "BcdOSLoaderInteger_HypervisorDebuggerBaudrate"),
    ElementType(0x250000F6, _O, "hypervisorchannel", "BcdOSLoaderInteger_HypervisorDebugger1394Channel"),
    ElementType(0x250000F7, _O, "bootuxpolicy", "BcdOSLoaderInteger_BootUxPolicy", BOOT_UX),
    ElementType(0x220000F9, _O, "hypervisorbusparams", "BcdOSLoaderString_HypervisorDebuggerBusParams"),
    # BcdResumeElementTypes
    ElementType(0x21000001, _R, "filedevice", "BcdResumeDevice_HiberFileDevice"),
    ElementType(0x22000002, _R, "filepath", "BcdResumeString_HiberFilePath"),
    ElementType(0x26000003, _R, "customsettings", "BcdResumeBoolean_UseCustomSettings"),
    ElementType(0x26000004, _R, "pae", "BcdResumeBoolean_x86PaeMode"),
    ElementType(0x21000005, _R, "associatedosdevice", "BcdResumeDevice_AssociatedOsDevice"),
    ElementType(0x26000006, _R, "debugoptionenabled", "BcdResumeBoolean_DebugOptionEnabled"),
    ElementType(0x25000007, _R, "bootux", "BcdResumeInteger_BootUxPolicy", BOOT_UX),
    ElementType(0x25000008, _R, "bootmenupolicy", "BcdResumeInteger_BootMenuPolicy", BOOT_MENU_POLICY),
    # BcdMemDiagElementTypes
    ElementType(0x25000001, _M, "passcount", "BcdMemDiagInteger_PassCount"),
    ElementType(0x25000002, _M, "testmix", "BcdMemDiagInteger_TestMix"),
    ElementType(0x25000003, _M, "failurecount", "BcdMemDiagInteger_FailureCount"),
    ElementType(0x25000004, _M, "testtofail", "BcdMemDiagInteger_TestToFail"),
    # BcdDeviceObjectElementTypes
    ElementType(0x35000001, _D, "ramdiskimageoffset", "BcdDeviceInteger_RamdiskImageOffset"),
    ElementType(0x35000002, _D, "ramdisktftpclientport", "BcdDeviceInteger_TftpClientPort"),
    ElementType(0x31000003, _D, "ramdisksdidevice", "BcdDeviceInteger_SdiDevice"),
    ElementType(0x32000004, _D, "ramdisksdipath", "BcdDeviceInteger_SdiPath"),
    ElementType(0x35000005, _D, "ramdiskimagelength", "BcdDeviceInteger_RamdiskImageLength"),
    ElementType(0x36000006, _D, "exportascd", "BcdDeviceBoolean_RamdiskExportAsCd"),
    ElementType(0x35000007, _D, "ramdisktftpblocksize", "BcdDeviceInteger_RamdiskTftpBlockSize"),
    ElementType(0x35000008, _D, "ramdisktftpwindowsize", "BcdDeviceInteger_RamdiskTftpWindowSize"),
    ElementType(0x36000009, _D, "ramdiskmcenabled", "BcdDeviceBoolean_RamdiskMulticastEnabled"),
    ElementType(0x3600000A, _D, "ramdiskmctftpfallback", "BcdDeviceBoolean_RamdiskMulticastTftpFallback"),
    ElementType(0x3600000B, _D, "ramdisktftpvarwindow", "BcdDeviceBoolean_RamdiskTftpVarWindow"),
)
_BY_SCOPE_ID = {(e.scope, e.id): e for e in ELEMENT_TYPES}
assert len(_BY_SCOPE_ID) == len(ELEMENT_TYPES), "an element type is declared twice"
assert all(element_format(e.id) in FORMAT_NAMES for e in ELEMENT_TYPES)

# The elements administrators use when a VM will not boot, shown by `bcd list` on every object.
ADMIN_ELEMENTS = ("safeboot", "safebootalternateshell", "bootstatuspolicy", "advancedoptions", "optionsedit",
                  "nointegritychecks", "testsigning", "bootlog", "bootems", "ems", "recoveryenabled", "bootdebug",
                  "debug", "bootmenupolicy")

# Microsoft's serial console guidance (Azure, Hyper-V): EMS on COM1 at 115200 baud.
EMS_PORT = 1
EMS_BAUDRATE = 115200

MAX_INHERIT_DEPTH = 16
MAX_OBJECTS = 4096
MAX_ELEMENTS = 1024
GUID_RE = re.compile(r"^\{?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}?$")


class BcdError(CorruptInput):
    """A BCD store whose structure is broken (no Objects key, an object without a type ...)."""


def normalize_guid(text: str) -> str | None:
    """"{xxxxxxxx-...}" in lower case, or None when ``text`` is not a GUID."""
    m = GUID_RE.match(text.strip())
    return "{" + m.group(1).lower() + "}" if m else None


# -- element data --------------------------------------------------------------------------------

@dataclass
class Element:
    id: int
    reg_type: int
    raw: bytes
    value: object  # decoded: bool, int, str, list[str], list[int], dict (device)
    problem: str | None = None  # the stored encoding is not what the format requires

    @property
    def format(self) -> int:
        return element_format(self.id)


def decode_element(element_id: int, reg_type: int, raw: bytes, data) -> Element:
    """The value of an element as its format says; a stored encoding that does not fit the format
    keeps its raw bytes and gets a ``problem`` (damage is reported, never hidden)."""
    fmt = element_format(element_id)
    want = FORMAT_REG_TYPE.get(fmt)
    if want is None:
        return Element(element_id, reg_type, raw, raw, f"unknown element format {fmt}")
    if reg_type != want:
        return Element(element_id, reg_type, raw, data,
                       f"stored as {type_name(reg_type)}, {FORMAT_NAMES[fmt]} elements are {type_name(want)}")
    if fmt == FORMAT_BOOLEAN:
        if not 1 <= len(raw) <= 8:
            return Element(element_id, reg_type, raw, raw, f"boolean of {len(raw)} bytes")
        return Element(element_id, reg_type, raw, any(raw),
                       None if len(raw) == 1 else f"boolean stored in {len(raw)} bytes (Windows writes 1)")
    if fmt == FORMAT_INTEGER:
        if len(raw) != 8:
            return Element(element_id, reg_type, raw, int.from_bytes(raw[:8], "little") if raw else raw,
                           f"integer of {len(raw)} bytes (Windows writes 8)")
        return Element(element_id, reg_type, raw, U64.unpack(raw)[0])
    if fmt == FORMAT_INTEGER_LIST:
        if len(raw) % 8:
            return Element(element_id, reg_type, raw, raw, f"integer list of {len(raw)} bytes (not a multiple of 8)")
        return Element(element_id, reg_type, raw, [v for (v,) in U64.iter_unpack(raw)])
    if fmt == FORMAT_OBJECT:
        guid = normalize_guid(data) if isinstance(data, str) else None
        return Element(element_id, reg_type, raw, guid or data, None if guid else f"object {data!r} is not a GUID")
    if fmt == FORMAT_OBJECT_LIST:
        items = [s for s in data if s] if isinstance(data, list) else []
        guids = [normalize_guid(s) for s in items]
        bad = [s for s, g in zip(items, guids) if g is None]
        return Element(element_id, reg_type, raw, [g or s for s, g in zip(items, guids)],
                       f"not GUIDs: {bad}" if bad else None)
    if fmt == FORMAT_DEVICE:
        return Element(element_id, reg_type, raw, decode_device(raw))
    return Element(element_id, reg_type, raw, data)


# Device element data: Microsoft does not document it. What is decoded here was read off the real
# store (regipy/BCD.xz) and is used for display only:
#   0x00 16  additional options object (GUID, zero when none)
#   0x10  4  device type (6 partition, 5 boot device, 0 block I/O with a sub-type at 0x20)
#   0x14  4  flags
#   0x18  4  size of the device data from 0x10
#   0x20     partition device: partition GUID (GPT) or byte offset (MBR, 8 bytes); at 0x34 the
#            partition style (0 GPT, 1 MBR); at 0x38 the disk GUID (GPT) or signature (MBR, 4 bytes)
DEVICE_HEADER = struct.Struct("<16sIII")
DEVICE_PARTITION = struct.Struct("<16sII16s")  # at 0x20: partition id, reserved, style, disk id
assert DEVICE_HEADER.size == 0x1C and DEVICE_PARTITION.size == 0x28
DEVICE_PARTITION_TYPE, DEVICE_BOOT_TYPE, DEVICE_BLOCK_IO_TYPE = 6, 5, 0
BLOCK_IO_RAMDISK, BLOCK_IO_FILE = 3, 5


def _guid_le(raw: bytes) -> str:
    return "{" + str(uuid.UUID(bytes_le=raw)) + "}"


def decode_device(raw: bytes) -> dict:
    """{"kind": ..., "text": bcdedit-like summary, ...}; unknown layouts keep kind "unknown"."""
    if len(raw) < DEVICE_HEADER.size + 4:
        return {"kind": "unknown", "text": f"device data of {len(raw)} bytes"}
    options, dev_type, _flags, _size = DEVICE_HEADER.unpack_from(raw, 0)
    out: dict = {}
    if options != bytes(16):
        out["options"] = _guid_le(options)
    if dev_type == DEVICE_BOOT_TYPE:
        out.update(kind="boot", text="boot")
    elif dev_type == DEVICE_PARTITION_TYPE and len(raw) >= 0x20 + DEVICE_PARTITION.size:
        part, _res, style, disk = DEVICE_PARTITION.unpack_from(raw, 0x20)
        if style == 0:
            out.update(kind="partition", style="gpt", partition_guid=_guid_le(part), disk_guid=_guid_le(disk),
                       text=f"partition {_guid_le(part)}")
        elif style == 1:
            offset = int.from_bytes(part[:8], "little")
            signature = int.from_bytes(disk[:4], "little")
            out.update(kind="partition", style="mbr", partition_offset=offset, disk_signature=f"{signature:08x}",
                       text=f"partition at byte {offset} of disk {signature:08x}")
        else:
            out.update(kind="partition", text=f"partition (style {style})")
    elif dev_type == DEVICE_BLOCK_IO_TYPE and len(raw) >= 0x24:
        sub = struct.unpack_from("<I", raw, 0x20)[0]
        path = _trailing_path(raw)
        kind = {BLOCK_IO_RAMDISK: "ramdisk", BLOCK_IO_FILE: "file"}.get(sub, f"block-io {sub}")
        out.update(kind=kind, text=f"{kind}=[...]{path}" if path else kind)
        if path:
            out["path"] = path
    else:
        out.update(kind="unknown", text=f"device type {dev_type}")
    if "options" in out:
        out["text"] += f",{out['options']}"
    return out


def _trailing_path(raw: bytes) -> str | None:
    """The UTF-16 path ("\\...") a file or ramdisk device ends with, if any."""
    at = raw.find(b"\\\x00", 0x20)
    while at >= 0 and at % 2:
        at = raw.find(b"\\\x00", at + 1)
    if at < 0:
        return None
    text = raw[at:].decode("utf-16-le", "replace")
    end = text.find("\x00")
    return text if end < 0 else text[:end]


# -- objects and the store ------------------------------------------------------------------------

@dataclass
class BcdObject:
    guid: str  # "{...}", lower case
    type: int
    key_path: str
    elements: dict[int, Element] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def object_kind(self) -> int:
        return (self.type >> 28) & 0xF

    @property
    def application_type(self) -> int | None:
        if self.object_kind == OBJECT_APPLICATION:
            return self.type & 0xFFFFF
        if self.object_kind == OBJECT_INHERIT and (self.type >> 20) & 0xF == 2:
            return self.type & 0xFFFFF
        return None

    @property
    def scope(self) -> str | None:
        """Which application elements (class 2) apply: bootmgr, osloader, ...; device objects:
        device; None: library elements only."""
        if self.object_kind == OBJECT_DEVICE or (self.object_kind == OBJECT_INHERIT and (self.type >> 20) & 0xF == 3):
            return SCOPE_DEVICE
        return APP_SCOPES.get(self.application_type)

    @property
    def type_description(self) -> str:
        if self.guid in SETTINGS_TITLES:
            return SETTINGS_TITLES[self.guid]
        kind = self.object_kind
        if kind == OBJECT_APPLICATION:
            app = self.type & 0xFFFFF
            image = (self.type >> 20) & 0xF
            if app in APPLICATION_TYPES:
                return APPLICATION_TYPES[app]
            return f"{IMAGE_TYPES.get(image, 'application').capitalize()} ({self.type:08x})"
        if kind == OBJECT_INHERIT:
            target = (self.type >> 20) & 0xF
            if target == 2:
                return f"Settings inherited by {APPLICATION_TYPES.get(self.type & 0xFFFFF, 'applications')} entries"
            return "Settings inherited by devices" if target == 3 else "Settings inherited by any entry"
        if kind == OBJECT_DEVICE:
            return "Device options"
        return f"Unknown object type {self.type:08x}"

    def element_type(self, element_id: int) -> ElementType | None:
        cls = element_class(element_id)
        if cls == CLASS_LIBRARY:
            return _BY_SCOPE_ID.get((SCOPE_LIBRARY, element_id))
        if cls == CLASS_DEVICE:
            return _BY_SCOPE_ID.get((SCOPE_DEVICE, element_id))
        if self.scope is None:
            return None
        return _BY_SCOPE_ID.get((self.scope, element_id))


def element_name(obj: BcdObject, element_id: int) -> str:
    et = obj.element_type(element_id)
    return et.name if et else f"custom:{element_id:08x}"


class BcdStore:
    """The objects of a BCD hive (an offline_fix.hive.Hive), read once."""

    def __init__(self, hive) -> None:
        self.hive = hive
        self.problems: list[str] = []
        # partition GUID (lower case, braces) or MBR byte offset -> a name for people, set by the caller
        self.device_names: dict[object, str] = {}
        objects_key = hive.find_key(OBJECTS_KEY)
        if objects_key is None:
            raise BcdError("not a BCD store: the hive has no Objects key", path=getattr(hive, "path", None),
                           field=OBJECTS_KEY)
        self.objects: dict[str, BcdObject] = {}
        for n, key in enumerate(objects_key.subkeys()):
            if n >= MAX_OBJECTS:
                self.problems.append(f"more than {MAX_OBJECTS} objects; the rest are not shown")
                break
            guid = normalize_guid(key.name)
            if guid is None:
                self.problems.append(f"object key {key.name!r} is not a GUID; skipped")
                continue
            self.objects[guid] = self._read_object(key, guid)

    @staticmethod
    def _read_object(key, guid: str) -> BcdObject:
        obj = BcdObject(guid, 0, f"{OBJECTS_KEY}\\{key.name}")
        desc = key.subkey(DESCRIPTION_KEY)
        type_value = desc.value(TYPE_VALUE) if desc is not None else None
        if type_value is None or type_value.type != REG_DWORD or not isinstance(type_value.data, int):
            obj.problems.append("no Description\\Type (REG_DWORD): object type unknown")
        else:
            obj.type = type_value.data
        elements = key.subkey(ELEMENTS_KEY)
        if elements is None:
            obj.problems.append("no Elements key")
            return obj
        for n, ekey in enumerate(elements.subkeys()):
            if n >= MAX_ELEMENTS:
                obj.problems.append(f"more than {MAX_ELEMENTS} elements; the rest are not shown")
                break
            if not re.fullmatch(r"[0-9a-fA-F]{8}", ekey.name):
                obj.problems.append(f"element key {ekey.name!r} is not 8 hex digits; skipped")
                continue
            value = ekey.value(ELEMENT_VALUE)
            if value is None:
                obj.problems.append(f"element {ekey.name} has no Element value")
                continue
            element = decode_element(int(ekey.name, 16), value.type, value.raw, value.data)
            if element.problem:
                obj.problems.append(f"element {ekey.name}: {element.problem}")
            obj.elements[element.id] = element
        return obj

    # -- names -----------------------------------------------------------------------------------
    def default_guid(self) -> str | None:
        bootmgr = self.objects.get(WELL_KNOWN["{bootmgr}"])
        element = bootmgr.elements.get(0x23000003) if bootmgr else None
        return element.value if element is not None and isinstance(element.value, str) else None

    def friendly_name(self, guid: str) -> str:
        if guid in GUID_NAMES:
            return GUID_NAMES[guid]
        if guid == self.default_guid():
            return "{default}"
        return guid

    def resolve(self, name: str) -> BcdObject:
        """The object ``name`` means: a GUID, a well-known name, or {default}; NotFound otherwise."""
        text = name.strip().lower()
        if not text.startswith("{") and normalize_guid(text) is None:
            text = "{" + text + "}"
        text = ALIASES.get(text, text)
        if text in ("{current}", CURRENT_GUID):
            raise Unsupported("{current} means the Windows that is running, and offline nothing is: name the "
                              "entry by {default} or by its GUID (see `offline-fix bcd list`)")
        if text in ("{default}", DEFAULT_GUID):
            guid = self.default_guid()
            if guid is None:
                raise NotFound("{default}: the boot manager has no default entry (element 0x23000003)")
        else:
            guid = WELL_KNOWN.get(text) or normalize_guid(text)
            if guid is None:
                raise NotFound(f"{name}: not a GUID or a known identifier ({', '.join(sorted(WELL_KNOWN))}, {{default}})")
        obj = self.objects.get(guid)
        if obj is None:
            raise NotFound(f"{name}: no such object in the store ({guid})")
        return obj

    def loaders(self) -> list[BcdObject]:
        return [o for o in self.objects.values() if o.type == OSLOADER_TYPE]

    def menu_loaders(self) -> list[BcdObject]:
        """The Windows Boot Loaders of the boot manager's menu (display order), not WinRE's."""
        bootmgr = self.objects.get(WELL_KNOWN["{bootmgr}"])
        listed = bootmgr.elements.get(0x24000001) if bootmgr else None
        guids = listed.value if listed is not None and isinstance(listed.value, list) else []
        return [self.objects[g] for g in dict.fromkeys(guids) if g in self.objects and self.objects[g].type == OSLOADER_TYPE]

    # -- inheritance -----------------------------------------------------------------------------
    def effective(self, obj: BcdObject, element_id: int) -> tuple[Element | None, str | None]:
        """(element, the object it comes from) through the inherit lists (0x14000006), depth-first
        as the boot manager does; a visited set and a depth limit bound the walk."""
        seen: set[str] = set()

        def walk(o: BcdObject, depth: int) -> tuple[Element | None, str | None]:
            if o.guid in seen or depth > MAX_INHERIT_DEPTH:
                return None, None
            seen.add(o.guid)
            if element_id in o.elements:
                return o.elements[element_id], o.guid
            inherit = o.elements.get(0x14000006)
            for guid in inherit.value if inherit is not None and isinstance(inherit.value, list) else []:
                parent = self.objects.get(guid)
                if parent is not None:
                    found = walk(parent, depth + 1)
                    if found[0] is not None:
                        return found
            return None, None

        return walk(obj, 0)

    # -- display ---------------------------------------------------------------------------------
    def show_value(self, obj: BcdObject, element: Element) -> str:
        """bcdedit-like text for an element's value."""
        et = obj.element_type(element.id)
        v = element.value
        if element.problem and element.format not in (FORMAT_DEVICE,):
            return f"{_short_raw(element)} ({element.problem})"
        if isinstance(v, bool):
            return "Yes" if v else "No"
        if isinstance(v, int):
            named = et.value_name(v) if et else None
            return named or str(v)
        if element.format == FORMAT_OBJECT and isinstance(v, str):
            return self.friendly_name(v)
        if element.format == FORMAT_OBJECT_LIST and isinstance(v, list):
            return " ".join(self.friendly_name(g) for g in v) or "(empty)"
        if element.format == FORMAT_INTEGER_LIST and isinstance(v, list):
            return " ".join(f"0x{x:x}" for x in v) or "(empty)"
        if isinstance(v, dict):
            key = v.get("partition_guid") if v.get("style") == "gpt" else v.get("partition_offset")
            known = self.device_names.get(key)
            return v.get("text", "?") + (f" ({known})" if known else "")
        return str(v)

    def describe(self) -> list[dict]:
        """Every object with its friendly name, type, description, device, path, every element
        (identifier, name, encoding, value) and the administrators' settings (effective, with
        where they are inherited from)."""
        default = self.default_guid()
        order = _display_order(self, default)
        out = []
        for obj in order:
            roles = self._roles(obj)
            d = {"id": obj.guid, "name": self.friendly_name(obj.guid), "type": f"0x{obj.type:08x}",
                 "type_description": obj.type_description, "roles": roles}
            for label, eid in (("description", 0x12000004), ("device", 0x11000001), ("path", 0x12000002)):
                el = obj.elements.get(eid)
                d[label] = self.show_value(obj, el) if el is not None else None
            if obj.scope == SCOPE_OSLOADER:
                for label, eid in (("osdevice", 0x21000001), ("systemroot", 0x22000002)):
                    el = obj.elements.get(eid)
                    d[label] = self.show_value(obj, el) if el is not None else None
            d["elements"] = [self._element_dict(obj, el) for el in sorted(obj.elements.values(), key=lambda e: e.id)]
            settings = {}
            for name in ADMIN_ELEMENTS:
                et = element_by_name(obj, name)
                if et is None:
                    continue
                el, source = self.effective(obj, et.id)
                settings[name] = {"value": None if el is None else self.show_value(obj, el), "id": f"0x{et.id:08x}",
                                  "inherited_from": None if source in (None, obj.guid) else self.friendly_name(source)}
            d["settings"] = settings
            if obj.problems:
                d["problems"] = obj.problems
            out.append(d)
        return out

    def _element_dict(self, obj: BcdObject, el: Element) -> dict:
        et = obj.element_type(el.id)
        value = el.value
        if isinstance(value, bytes):
            value = value.hex()
        d = {"id": f"0x{el.id:08x}", "key": f"{el.id:08x}", "name": et.name if et else None,
             "ms_name": et.ms_name if et else None, "format": FORMAT_NAMES.get(el.format, "unknown"),
             "reg_type": type_name(el.reg_type), "value": value, "display": self.show_value(obj, el)}
        if el.reg_type == REG_BINARY:
            d["raw"] = el.raw.hex()
        if el.problem:
            d["problem"] = el.problem
        return d

    def _roles(self, obj: BcdObject) -> list[str]:
        """How other objects refer to this one: default, display order, recovery sequence of ...,
        resume object of ..., inherited by ..."""
        roles = []
        default = self.default_guid()
        if obj.guid == default:
            roles.append("default entry of {bootmgr}")
        for other in self.objects.values():
            for eid, label in ((0x24000001, "in the display order of"), (0x24000010, "in the tools menu of"),
                               (0x14000008, "recovery sequence of"), (0x14000006, "inherited by")):
                el = other.elements.get(eid)
                if el is not None and isinstance(el.value, list) and obj.guid in el.value:
                    roles.append(f"{label} {self.friendly_name(other.guid)}")
            if other.scope == SCOPE_OSLOADER:
                el = other.elements.get(0x23000003)
                if el is not None and el.value == obj.guid:
                    roles.append(f"resume object of {self.friendly_name(other.guid)}")
        return roles


def _display_order(store: BcdStore, default: str | None) -> list[BcdObject]:
    """{fwbootmgr}, {bootmgr}, the loaders in display order (default first), the rest by GUID."""
    first = [WELL_KNOWN["{fwbootmgr}"], WELL_KNOWN["{bootmgr}"]]
    bootmgr = store.objects.get(WELL_KNOWN["{bootmgr}"])
    listed = bootmgr.elements.get(0x24000001) if bootmgr else None
    if default:
        first.append(default)
    if listed is not None and isinstance(listed.value, list):
        first.extend(listed.value)
    seen: set[str] = set()
    out = []
    for guid in first + sorted(store.objects):
        if guid in store.objects and guid not in seen:
            seen.add(guid)
            out.append(store.objects[guid])
    return out


def _short_raw(element: Element) -> str:
    raw = element.raw.hex()
    return raw if len(raw) <= 32 else raw[:32] + ".."


# -- element names and values --------------------------------------------------------------------

def element_by_name(obj: BcdObject, name: str) -> ElementType | None:
    """The element ``name`` (bcdedit's name, Microsoft's name, or a hex id) means on ``obj``."""
    text = name.strip()
    m = re.fullmatch(r"(?:0x)?([0-9a-fA-F]{8})", text)
    if m:
        eid = int(m.group(1), 16)
        return obj.element_type(eid) or ElementType(eid, "custom", f"custom:{eid:08x}", "")
    low = text.lower()
    for et in ELEMENT_TYPES:
        if (et.name == low or et.ms_name.lower() == low) and (et.scope == SCOPE_LIBRARY or et.scope == obj.scope):
            return et
    return None


def lookup_element(obj: BcdObject, name: str, store: BcdStore) -> ElementType:
    et = element_by_name(obj, name)
    if et is not None:
        return et
    other = sorted({e.scope for e in ELEMENT_TYPES if e.name == name.strip().lower()})
    if other:
        raise Refused(f"{name} is a {'/'.join(other)} element; {store.friendly_name(obj.guid)} is a "
                      f"{obj.type_description} (type 0x{obj.type:08x}), which does not use it")
    raise NotFound(f"unknown element {name!r}: use bcdedit's name (safeboot, nointegritychecks, ...) or its "
                   "8-hex-digit identifier")


TRUE_WORDS = ("yes", "on", "true", "1")
FALSE_WORDS = ("no", "off", "false", "0")


def encode_value(et: ElementType, text: str, store: BcdStore) -> tuple[int, object, str]:
    """(registry type, data for HiveWriter.set_value, display) for ``text`` given to element ``et``."""
    fmt = et.format
    word = text.strip()
    if fmt == FORMAT_BOOLEAN:
        if word.lower() in TRUE_WORDS:
            return REG_BINARY, b"\x01", "Yes"
        if word.lower() in FALSE_WORDS:
            return REG_BINARY, b"\x00", "No"
        raise Refused(f"{et.name} takes yes or no (on/off, true/false), not {text!r}")
    if fmt == FORMAT_INTEGER:
        number = _parse_integer(et, word)
        return REG_BINARY, U64.pack(number), et.value_name(number) or str(number)
    if fmt == FORMAT_INTEGER_LIST:
        numbers = [_parse_integer(et, w) for w in re.split(r"[,\s]+", word) if w]
        return REG_BINARY, b"".join(U64.pack(n) for n in numbers), " ".join(f"0x{n:x}" for n in numbers)
    if fmt == FORMAT_STRING:
        if "\x00" in text:
            raise Refused(f"{et.name}: a string may not contain NUL")
        return REG_SZ, text, text
    if fmt == FORMAT_OBJECT:
        obj = store.resolve(word)
        return REG_SZ, obj.guid, store.friendly_name(obj.guid)
    if fmt == FORMAT_OBJECT_LIST:
        objs = [store.resolve(w) for w in re.split(r"[,\s]+", word) if w]
        if not objs:
            raise Refused(f"{et.name} needs at least one object")
        return REG_MULTI_SZ, [o.guid for o in objs], " ".join(store.friendly_name(o.guid) for o in objs)
    if fmt == FORMAT_DEVICE:
        raise Unsupported(f"{et.name} is a device element: its binary layout is not documented by Microsoft, "
                          "so offline-fix does not write it (use bcdedit on a running Windows)")
    raise Unsupported(f"element format {fmt} of {et.name} is not known")


def _parse_integer(et: ElementType, word: str) -> int:
    low = word.lower()
    for name, number in et.values:
        if low in (name.lower(), f"{et.ms_name.split('_')[-1].lower()}{name.lower()}"):
            return number
    try:
        number = int(word, 0)
    except ValueError:
        names = ", ".join(n for n, _ in et.values)
        raise Refused(f"{et.name} takes {'one of ' + names + ' or ' if names else ''}a number, not {word!r}") from None
    if not 0 <= number < 1 << 64:
        raise Refused(f"{et.name}: {number} does not fit 64 bits")
    return number


# -- planned changes -----------------------------------------------------------------------------

@dataclass
class ElementChange:
    """One element to set (``text`` given) or delete (``text`` None) on an object."""

    object_name: str  # as the user wrote it: {default}, {bootmgr}, a GUID
    element: str  # bcdedit's name or an id
    text: str | None


def apply_changes(writer, hive, changes: list[ElementChange], record, bcd_details: list[dict]) -> None:
    """Perform ``changes`` on the writable hive with ``writer`` (HiveWriter). Every registry
    operation is reported to ``record(op, key, name, type, data, old, old_type)`` (the arguments
    of offline_fix.changes.registry.Edit, which the caller keeps: the independent check fails on
    anything unrecorded); a bcdedit-level description (object, element, old -> new) goes to
    ``bcd_details``."""
    from offline_fix.hive.writer import encode_data

    store = BcdStore(hive)
    for ch in changes:
        obj = store.resolve(ch.object_name)
        et = lookup_element(obj, ch.element, store)
        old = obj.elements.get(et.id)
        key = f"{obj.key_path}\\{ELEMENTS_KEY}\\{et.key_name}"
        if old is not None:
            key = f"{obj.key_path}\\{ELEMENTS_KEY}\\{_stored_key_name(hive, obj, et.id)}"
        detail = {"op": "bcd-set" if ch.text is not None else "bcd-delete", "object": obj.guid,
                  "object_name": store.friendly_name(obj.guid), "element": et.name, "element_id": f"0x{et.id:08x}",
                  "ms_name": et.ms_name or None, "key": key,
                  "old": store.show_value(obj, old) if old is not None else None}
        if ch.text is None:
            if old is None:
                raise NotFound(f"{store.friendly_name(obj.guid)} has no {et.name} element to delete")
            writer.delete_key(key, recursive=True)
            record("delete-key", key)
            detail["new"] = None
        else:
            reg_type, data, display = encode_value(et, ch.text, store)
            detail.update(new=display, reg_type=type_name(reg_type),
                          data=data.hex() if isinstance(data, bytes) else data)
            if old is not None and old.reg_type == reg_type and old.raw == encode_data(reg_type, data):
                detail["unchanged"] = True  # bcdedit would rewrite it; nothing to journal here
                bcd_details.append(detail)
                continue
            if old is None and writer.create_key(key):
                record("create-key", key)
            old_value = hive.key(key).value(ELEMENT_VALUE) if old is not None else None
            writer.set_value(key, ELEMENT_VALUE, reg_type, data)
            record("set", key, ELEMENT_VALUE, reg_type, data, None if old_value is None else old_value.data,
                   None if old_value is None else old_value.type)
        bcd_details.append(detail)
        store = BcdStore(hive)  # the next change sees this one


def _stored_key_name(hive, obj: BcdObject, element_id: int) -> str:
    """The element key's name as stored (its case), found case-insensitively."""
    elements = hive.key(f"{obj.key_path}\\{ELEMENTS_KEY}")
    for sub in elements.subkeys():
        if re.fullmatch(r"[0-9a-fA-F]{8}", sub.name) and int(sub.name, 16) == element_id:
            return sub.name
    raise NotFound(f"element {element_id:08x} of {obj.guid} vanished")


def ems_changes(store: BcdStore, loader: BcdObject, on: bool) -> list[ElementChange]:
    """`bcdedit /set {bootmgr} bootems yes`, `/ems {loader} on`, `/emssettings EMSPORT:1
    EMSBAUDRATE:115200`: Microsoft's serial-console recipe; off turns both switches off and leaves
    the port settings."""
    word = "yes" if on else "no"
    changes = [ElementChange("{bootmgr}", "bootems", word), ElementChange(loader.guid, "ems", word)]
    if on:
        if WELL_KNOWN["{emssettings}"] not in store.objects:
            raise NotFound("the store has no {emssettings} object to hold the EMS port and baud rate")
        changes += [ElementChange("{emssettings}", "emsport", str(EMS_PORT)),
                    ElementChange("{emssettings}", "emsbaudrate", str(EMS_BAUDRATE))]
    return changes


def loader_for_partition(store: BcdStore, partition) -> list[BcdObject]:
    """The Windows Boot Loaders whose osdevice is ``partition`` (offline_fix.target.partitions.Partition):
    GPT by unique partition GUID, MBR by byte offset."""
    found = []
    for obj in store.loaders():
        el = obj.elements.get(0x21000001)
        dev = el.value if el is not None and isinstance(el.value, dict) else {}
        if dev.get("kind") != "partition":
            continue
        if dev.get("style") == "gpt" and partition.guid and \
                dev.get("partition_guid", "").strip("{}").lower() == str(partition.guid).strip("{}").lower():
            found.append(obj)
        elif dev.get("style") == "mbr" and dev.get("partition_offset") == partition.offset:
            found.append(obj)
    return found


# -- where the store lives -----------------------------------------------------------------------

ESP_STORE = "EFI\\Microsoft\\Boot\\BCD"  # UEFI: on the EFI system partition (FAT32)
BIOS_STORE = "Boot\\BCD"  # BIOS: on the active (System Reserved) partition, or the Windows volume
MAX_STORE_SIZE = 64 * 1024 * 1024


@dataclass
class StoreLocation:
    """Where a BCD store is, and what to write it through: ``target`` and ``volume`` go to
    WriteSession, ``path`` to HiveEditPlan (on ``volume.fs()``)."""

    target: object  # offline_fix.target.Target
    volume: object  # offline_fix.target.Volume
    path: str
    where: str  # for people: "partition 1 (EFI system partition, fat32)"
    others: list[str] = field(default_factory=list)  # further stores seen, not used

    def to_dict(self) -> dict:
        d = {"where": self.where, "path": self.path, "filesystem": self.volume.filesystem,
             "volume": self.volume.index, "volume_offset": self.volume.offset}
        if self.others:
            d["other_stores"] = self.others
        return d

    def read(self) -> bytes:
        return self.volume.fs().read_bytes(self.path, MAX_STORE_SIZE)


def _find(fs, names: tuple[str, ...]) -> str | None:
    for name in names:
        try:
            path = fs.resolve(name)
        except NotFound:
            continue
        if fs.is_file(path):
            return path
    return None


def _volume_label(volume) -> str:
    part = getattr(volume, "partition", None)
    kind = part.type_name if part is not None else volume.filesystem
    return f"partition {volume.index} ({kind}, {volume.filesystem}{', active' if part is not None and part.bootable else ''})"


def locate_store(target, store: str | None = None) -> StoreLocation:
    """The BCD store of TARGET (offline_fix.target.Target): with ``store`` (a BCD file, or a
    mounted ESP / System Reserved folder) that one; a folder target: Boot\\BCD or
    EFI\\Microsoft\\Boot\\BCD under it; a disk: the EFI system partition, then the active
    partition, then any other NTFS volume (single-partition disks)."""
    import os

    from offline_fix.errors import OfflineFixError
    from offline_fix.target import Target, Volume
    from offline_fix.target.fs import FolderFS

    if store is not None:
        if os.path.isdir(store):
            folder, name = store, _find(FolderFS(store), (ESP_STORE, BIOS_STORE, "BCD"))
            if name is None:
                raise NotFound(f"no BCD store in {store} (looked for {ESP_STORE}, {BIOS_STORE} and BCD)")
        elif os.path.isfile(store):
            folder, name = os.path.dirname(os.path.abspath(store)), os.path.basename(store)
        else:
            raise NotFound(f"--store {store}: no such file or folder")
        volume = Volume(0, 0, 0, "folder", label=os.path.basename(os.path.abspath(folder)), _fs=FolderFS(folder))
        # Same spec as TARGET: its journal records the change and `offline-fix undo TARGET` undoes it.
        write_target = Target(target.spec, "folder", None, None, [volume])
        return StoreLocation(write_target, volume, volume.fs().resolve(name), f"--store {store}")
    found: list[StoreLocation] = []
    problems: list[str] = []
    errors: list[OfflineFixError] = []
    if target.disk is None:
        volume = target.volumes[0]
        path = _find(volume.fs(), (BIOS_STORE, ESP_STORE))
        if path is None:
            raise NotFound(f"no BCD store under {target.spec} (looked for {BIOS_STORE} and {ESP_STORE}); a "
                           "separately mounted EFI system partition is given with --store PATH")
        return StoreLocation(target, volume, path, f"folder {target.spec}")

    def rank(v) -> int:
        part = v.partition
        if (part is not None and part.is_esp) or v.filesystem in ("fat32", "fat16"):
            return 0
        return 1 if part is not None and part.bootable else 2

    for volume in sorted(target.volumes, key=rank):
        if volume.filesystem not in ("ntfs", "fat32", "fat16"):
            continue
        names = (ESP_STORE, BIOS_STORE) if rank(volume) == 0 else (BIOS_STORE, ESP_STORE)
        try:
            path = _find(volume.fs(), names)
        except OfflineFixError as exc:
            problems.append(f"{_volume_label(volume)}: {exc}")
            errors.append(exc)
            continue
        if path is not None:
            found.append(StoreLocation(target, volume, path, _volume_label(volume)))
    if not found and errors:
        raise errors[0]  # a broken boot volume (corrupt FAT, ...): say so, with its own exit code
    if not found:
        raise NotFound(f"no BCD store on {target.spec}: looked for {ESP_STORE} on the EFI system partition and "
                       f"{BIOS_STORE} on the other volumes" + (f" ({'; '.join(problems)})" if problems else ""))
    best = found[0]
    best.others = [f"{loc.where}: {loc.path}" for loc in found[1:]] + [f"unreadable: {p}" for p in problems]
    return best
