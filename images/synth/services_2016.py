"""The service table of the demo disk: inbox drivers and services of Windows Server 2016 (build
14393) as they are usually configured on a Hyper-V / Azure guest, written from public
documentation of the inbox drivers (names, load-order groups, start types); plus the third-party
drivers of the demo's story. Rows: "group|type|start|error control|names" (tags are given in
order within a group for boot- and system-start drivers)."""

from __future__ import annotations

from dataclasses import dataclass

DRIVER_ROWS = """
Core|1|0|3|ACPI CNG
Boot Bus Extender|1|0|3|acpiex msisadrv partmgr pci pdc vdrvroot
Boot Bus Extender|1|3|3|isapnp
System Bus Extender|1|0|3|mountmgr spaceport vmbus volmgr volmgrx
System Bus Extender|1|0|1|b06bdrv ebdrv intelide
System Bus Extender|1|3|1|pciide pcmcia nvraid mssmbios CompositeBus
SCSI Miniport|1|0|3|3ware ADP80XX amdsata amdsbs arcsas atapi HpSAMD iaStorAV iaStorV LSI_SAS LSI_SAS2i LSI_SAS3i LSI_SSS megasas megasas2i megasas35i megasr mvumis nvstor percsas2i percsas3i SiSRaid2 SiSRaid4 stexstor storahci stornvme vsmraid VSTXRAID cht4iscsi
SCSI Miniport|1|3|1|iScsiPrt sdstor UASPStor storufs
SCSI Class|1|0|1|EhStorClass EhStorTcgDrv
SCSI CDROM Class|1|1|1|cdrom
Base|1|0|3|KSecDD storvsc
Base|1|1|1|Beep Null
Cryptography|1|0|1|KSecPkg
Filter|1|0|3|CLFS
PnP Filter|1|0|3|fvevol iorate rdyboost bttflt
PnP Filter|1|3|1|stdcfltn
Extended Base|1|0|1|storflt
Extended Base|1|3|1|AmdK8 AmdPPM intelppm Processor
WdfLoadGroup|1|0|1|Wdf01000
Core Security Extensions|1|0|1|WindowsTrustedRT WindowsTrustedRTProxy intelpep
NDIS Wrapper|1|0|3|NDIS
PNP_TDI|1|0|1|Tcpip WFPLWFS
PNP_TDI|1|1|1|AFD tdx NetBT
PNP_TDI|1|3|1|Tcpip6 tunnel
NetBIOSGroup|1|1|1|NetBIOS
PSched|1|1|1|Psched
Network|2|0|1|Mup
Network|2|1|1|rdbss CSC Dfsc
Network|2|3|1|bowser MRxDAV mrxsmb mrxsmb10 mrxsmb20 srv srv2 srvnet
NDIS|1|3|1|netvsc kdnic e1i63x64 mlx4_bus NdisVirtualBus vwifibus
Video|1|1|1|BasicDisplay BasicRender
Video|1|3|1|HyperVideo RdpVideoMiniport
Keyboard Class|1|3|1|kbdclass
Keyboard Port|1|3|1|i8042prt
Pointer Class|1|3|1|mouclass
Pointer Port|1|3|1|sermouse
FSFilter Infrastructure|2|0|1|FltMgr
FSFilter Bottom|2|0|1|FileInfo
FSFilter Bottom|2|1|1|storqosflt
FSFilter Anti-Virus|2|0|1|WdFilter
FSFilter Compression|2|0|1|Wof
FSFilter Virtualization|2|2|1|luafv wcifs
FSFilter Encryption|2|1|1|FileCrypt
Boot File System|2|3|3|Ntfs ReFS ReFSv1
File System|2|3|1|exfat fastfat udfs Msfs Npfs cdfs
File System|8|0|0|Fs_Rec
|1|0|3|disk volume volsnap hwpolicy
|1|1|1|dam GpuEnergyDrv Ndu npsvctrig nsiproxy mpsdrv PEAUTH tcpipreg condrv
|1|2|1|lltdio rspndr
|1|3|1|1394ohci acpipagr AcpiPmi acpitime AsyncMac CAD cht4vbd bxfcoe bxois elxfcoe elxstor ErrDev fdc FsDepends gencounter genericusbfn HDAudBus HidBatt HidBth hidi2c HidIr HidUsb HTTP hvservice hyperkbd iaLPSSi_GPIO iaLPSSi_I2C ibbus kbdhid ksthunk mausbhost mausbip Modem monitor mouhid MsBridge msgpiowin32 mshidkmdf mshidumdf MsLldp MsRPC ndfltr NdisCap NdisImPlatform NdisTapi Ndisuio NdisWan ndiswanlegacy ndproxy Parport PptpMiniport QWAVEdrv RasAcd RasAgileVpn Rasl2tp RasPppoe RasSstp rdpbus RDPDR RFCOMM s3cap sacdrv sdbus SerCx SerCx2 Serenum Serial sfloppy smbdirect SpbCx swenum terminpt UcmCx0101 UcmTcpciCx0101 UcmUcsi Ucx01000 UdeCx UEFI UevAgentDriver Ufx01000 UfxChipidea ufxsynopsys umbus UmPass usbccgp usbehci usbhub USBHUB3 usbohci usbprint USBSTOR usbuhci USBXHCI VerifierExt vhdmp vhf VMBusHID vmgid vpci WacomPen Wanarp wanarpv6 WdNisDrv WIMMount WinMad WinNat WINUSB WinVerbs WmiAcpi WpdUpFltr ws2ifsl WudfPf WUDFRd
"""

# svchost groups and own-process programs; "type|start|program|names" (program: svchost group, or an .exe)
WIN32_ROWS = """
0x20|2|netsvcs|BITS gpsvc IKEEXT iphlpsvc LanmanServer ProfSvc Schedule SENS ShellHWDetection Themes Winmgmt wuauserv UsoSvc seclogon SessionEnv UserManager
0x20|3|netsvcs|AppMgmt CertPropSvc DsmSvc lfsvc NcaSvc RasAuto RasMan RemoteAccess SharedAccess wercplsupport XblAuthManager XblGameSave wlidsvc TokenBroker
0x20|2|LocalService|EventSystem FontCache netprofm nsi W32Time WdiServiceHost lmhosts
0x20|3|LocalService|AJRouter SstpSvc upnphost SSDPSRV FDResPub fdPHost tzautoupdate LicenseManager
0x20|2|LocalServiceNetworkRestricted|Dhcp EventLog
0x20|2|LocalServiceNoNetwork|BFE MpsSvc DPS
0x20|2|NetworkService|CryptSvc Dnscache LanmanWorkstation NlaSvc WinRM
0x20|3|NetworkService|KtmRm PolicyAgent TermService
0x20|2|DcomLaunch|DcomLaunch PlugPlay Power BrokerInfrastructure SystemEventsBroker LSM
0x20|2|RPCSS|RpcSs RpcEptMapper
0x20|3|LocalSystemNetworkRestricted|AudioEndpointBuilder hidserv TabletInputService TrkWks UALSVC wudfsvc Netman
0x20|3|ICService|vmicguestinterface vmicheartbeat vmickvpexchange vmicrdv vmicshutdown vmictimesync vmicvmsession vmicvss
0x20|3|wsappx|AppXSvc ClipSVC StateRepository
0x20|2|appmodel|CoreMessagingRegistrar tiledatamodelsvc
0x20|3|DcomLaunch|TimeBrokerSvc
0x20|2|utcsvc|DiagTrack
0x10|2|spoolsv.exe|Spooler
0x10|2|lsass.exe|SamSs
0x10|3|lsass.exe|KeyIso Netlogon VaultSvc EFS
0x10|2|sppsvc.exe|sppsvc
0x10|3|msiexec.exe|msiserver
0x10|3|TrustedInstaller.exe|TrustedInstaller
0x10|3|vds.exe|vds
0x10|3|vssvc.exe|VSS
0x10|3|msdtc.exe|MSDTC
0x10|3|dllhost.exe|COMSysApp
0x10|3|SearchIndexer.exe|WSearch
0x10|3|snmptrap.exe|SNMPTRAP
0x10|3|locator.exe|RpcLocator
0x10|3|perfhost.exe|PerfHost
0x10|3|svchost.exe|swprv
0x10|2|MsMpEng.exe|WinDefend
0x10|3|NisSrv.exe|WdNisSvc
"""


@dataclass(frozen=True)
class ServiceRow:
    name: str
    type: int
    start: int
    error_control: int
    group: str | None
    image_path: str | None
    tag: int | None = None
    display_name: str | None = None
    expand: bool = True  # ImagePath as REG_EXPAND_SZ


def _drivers() -> list[ServiceRow]:
    rows = []
    tags: dict[str, int] = {}
    for line in DRIVER_ROWS.strip().splitlines():
        group, type_, start, error, names = line.split("|")
        for n, name in enumerate(names.split()):
            tag = None
            if group and int(start) <= 1:
                tags[group] = tags.get(group, 0) + 1
                tag = tags[group]
            # Windows 10 / Server 2016 write "System32\drivers\x.sys"; older inf files "\SystemRoot\..."
            image = (f"System32\\drivers\\{name.lower()}.sys" if n % 3 else f"\\SystemRoot\\System32\\drivers\\{name}.sys")
            if name in ("Tcpip", "NetBT"):
                image = None  # no ImagePath: System32\drivers\<name>.sys
            rows.append(ServiceRow(name, int(type_), int(start), int(error), group or None, image, tag,
                                   f"@{name.lower()}.inf,%{name}.SvcDesc%;{name}"))
    return rows


def _win32() -> list[ServiceRow]:
    rows = []
    for line in WIN32_ROWS.strip().splitlines():
        type_, start, program, names = line.split("|")
        for name in names.split():
            image = (f"%SystemRoot%\\system32\\{program}" if program.endswith(".exe")
                     else f"%SystemRoot%\\system32\\svchost.exe -k {program}")
            if name == "WinDefend":
                image = '"%ProgramFiles%\\Windows Defender\\MsMpEng.exe"'
            rows.append(ServiceRow(name, int(type_, 16), int(start), 1, None, image, None,
                                   f"@%SystemRoot%\\system32\\{name.lower()}.dll,-100"))
    return rows


INBOX: list[ServiceRow] = _drivers() + _win32()

# The story of the demo disk (DESIGN.md): a third-party disk filter, started at boot, that crashes
# (bug check in nt!IopLoadDriver); it is also listed in the DiskDrive class UpperFilters, so that
# disabling it without taking it out of the list would stop Windows with 0x7B.
CULPRIT = ServiceRow("acmedisk", 1, 0, 1, "PnP Filter", "\\SystemRoot\\System32\\drivers\\acmedisk.sys", 5,
                     "Acme Disk Shield")
# A file-system minifilter whose driver file is all zeros (the July 2024 channel-file failure).
ZEROED = ServiceRow("acmemon", 2, 1, 1, "FSFilter Activity Monitor", "System32\\drivers\\acmemon.sys", 1,
                    "Acme Activity Monitor")
# A UMDF driver, unsigned, in drivers\UMDF.
UMDF = ServiceRow("AcmeSensor", 1, 3, 1, None, "\\SystemRoot\\System32\\drivers\\UMDF\\AcmeSensor.dll", None,
                  "Acme Sensor (UMDF)")
# A driver installed outside the Windows folder, in the \??\C:\ form.
OUTSIDE = ServiceRow("acmeusb", 1, 3, 1, "Extended Base", "\\??\\C:\\Program Files\\Acme\\acmeusb.sys", None,
                     "Acme USB Key")
THIRD_PARTY: list[ServiceRow] = [CULPRIT, ZEROED, UMDF, OUTSIDE]
