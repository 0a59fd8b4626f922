"""Azure adapter: the REAL azure-mgmt-compute ComputeManagementClient against a small fake ARM.

The fake ARM is an HTTPS server on 127.0.0.1 (self-signed certificate made here with
cryptography) that serves the REST calls the adapter makes, shaped after the published
Microsoft.Compute REST API and ARM's asynchronous-operation protocol
(learn.microsoft.com/azure/azure-resource-manager/management/async-operations):
PUT answers 200 (VM update) or 202 (disk, snapshot creation) with provisioningState "Updating" or
"Creating" and an Azure-AsyncOperation
header; POST deallocate/start answer 202 with Azure-AsyncOperation and Location; the operation
URL says "InProgress" once, then "Succeeded", and only then does the change take effect.
State is kept per resource; unknown resources get 404; a bearer token is required.
Nothing in the SDK is mocked.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from offline_fix.cli import main
from offline_fix.cloud.azure import AzureAdapter, download_blob, free_lun, parse_id, resource_name
from offline_fix.cloud.state import State
from offline_fix.cloud.workflow import Calls, Interrupted, stop_after
from offline_fix.errors import NotFound, PermissionDenied, Refused

SUB = "00000000-0000-0000-0000-000000000001"
TOKEN = "fake-arm-token"
PROVIDER = "/providers/Microsoft.Compute"
SKUS = {"Standard_LRS", "Premium_LRS", "StandardSSD_LRS", "UltraSSD_LRS", "Premium_ZRS", "StandardSSD_ZRS",
        "PremiumV2_LRS"}


def rid(rg, kind, name):
    return f"/subscriptions/{SUB}/resourceGroups/{rg}{PROVIDER}/{kind}/{name}"


class ArmError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class FakeArm:
    """Resources by lower-cased id; operations complete after one 'InProgress' poll."""

    def __init__(self):
        self.resources: dict[str, dict] = {}
        self.power: dict[str, str] = {}
        self.ops: dict[str, dict] = {}
        self.log: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.url = ""

    # -- seeding ---------------------------------------------------------------------------------------
    def add_disk(self, rg, name, *, location="westeurope", zones=None, sku="Premium_LRS", size=127,
                 gen="V2", security="TrustedLaunch"):
        props = {"diskSizeGB": size, "osType": "Windows", "hyperVGeneration": gen, "provisioningState": "Succeeded",
                 "diskState": "Unattached", "creationData": {"createOption": "FromImage"}}
        if security:
            props["securityProfile"] = {"securityType": security}
        disk = {"id": rid(rg, "disks", name), "name": name, "type": "Microsoft.Compute/disks", "location": location,
                "sku": {"name": sku, "tier": sku.split("_")[0]}, "properties": props}
        if zones:
            disk["zones"] = zones
        self.resources[disk["id"].lower()] = disk
        return disk["id"]

    def add_vm(self, rg, name, *, os_disk, location="westeurope", zones=None, power="running", data_disks=()):
        vm = {"id": rid(rg, "virtualMachines", name), "name": name, "type": "Microsoft.Compute/virtualMachines",
              "location": location, "properties": {
                  "vmId": f"vm-{name}", "provisioningState": "Succeeded",
                  "hardwareProfile": {"vmSize": "Standard_D2s_v5"},
                  "storageProfile": {"osDisk": {"osType": "Windows", "name": os_disk.rsplit("/", 1)[1],
                                                "createOption": "FromImage", "caching": "ReadWrite",
                                                "managedDisk": {"id": os_disk}},
                                     "dataDisks": list(data_disks)},
                  "diagnosticsProfile": {"bootDiagnostics": {"enabled": True}}}}
        if zones:
            vm["zones"] = zones
        self.resources[vm["id"].lower()] = vm
        self.power[vm["id"].lower()] = power
        for disk_id in [os_disk] + [d["managedDisk"]["id"] for d in data_disks]:
            self._attach_disk(disk_id, vm["id"])
        return vm["id"]

    def get(self, resource_id):
        return self.resources.get(resource_id.lower())

    def puts(self, fragment):
        return [p for m, p, _ in self.log if m == "PUT" and fragment.lower() in p.lower()]

    def _attach_disk(self, disk_id, vm_id):
        disk = self.get(disk_id)
        disk["managedBy"] = vm_id
        disk["properties"]["diskState"] = "Attached"

    # -- operations ------------------------------------------------------------------------------------
    def _operation(self, location, done):
        op_id = f"op-{next(self.ids)}"
        self.ops[op_id] = {"polls_left": 1, "done": done, "status": "InProgress",
                           "start": dt.datetime.now(dt.timezone.utc).isoformat()}
        base = f"{self.url}/subscriptions/{SUB}{PROVIDER}/locations/{location}"
        return {"Azure-AsyncOperation": f"{base}/operations/{op_id}?api-version=2024-11-01",
                "Location": f"{base}/operationResults/{op_id}?api-version=2024-11-01", "Retry-After": "0"}

    def _poll(self, op_id):
        op = self.ops.get(op_id)
        if op is None:
            raise ArmError(404, "NotFound", f"operation {op_id} not found")
        if op["status"] == "InProgress":
            if op["polls_left"] > 0:
                op["polls_left"] -= 1
            else:
                op["done"]()
                op["status"] = "Succeeded"
        return op

    # -- request handling ------------------------------------------------------------------------------
    def handle(self, method, path, query, headers, body):
        if path.startswith("/blobs/"):
            return self._blob(path, query)
        if headers.get("Authorization") != f"Bearer {TOKEN}":
            raise ArmError(401, "AuthenticationFailed", "bearer token missing or wrong")
        if "api-version" not in query:
            raise ArmError(400, "MissingApiVersionParameter", "api-version is required")
        parts = path.split("/")
        # /subscriptions/{sub}/providers/Microsoft.Compute/locations/{loc}/operations|operationResults/{id}
        if len(parts) == 9 and parts[3:6] == ["providers", "Microsoft.Compute", "locations"]:
            op = self._poll(parts[8])
            if parts[7] == "operations":
                return 200, {"Retry-After": "0"}, {"name": parts[8], "status": op["status"], "startTime": op["start"]}
            return (200, {}, None) if op["status"] == "Succeeded" else (202, {"Retry-After": "0"}, None)
        if len(parts) < 9 or parts[1] != "subscriptions" or parts[2] != SUB or parts[3] != "resourceGroups":
            raise ArmError(404, "NotFound", f"no route {path}")
        resource_id = "/".join(parts[:9])
        action = parts[9] if len(parts) > 9 else None
        kind = parts[7]
        if method == "PUT" and action is None:
            return self._put(kind, resource_id, body)
        resource = self.get(resource_id)
        if resource is None:
            raise ArmError(404, "ResourceNotFound", f"The Resource '{resource_id}' was not found.")
        if method == "GET" and action is None:
            return 200, {}, resource
        if kind == "virtualMachines" and method == "GET" and action == "instanceView":
            power = self.power[resource_id.lower()]
            return 200, {}, {"statuses": [{"code": "ProvisioningState/succeeded"}, {"code": f"PowerState/{power}"}]}
        if kind == "virtualMachines" and method == "POST" and action in ("deallocate", "start"):
            return self._power_op(resource, action)
        if kind == "virtualMachines" and method == "POST" and action == "retrieveBootDiagnosticsData":
            name = resource["name"]
            return 200, {}, {"consoleScreenshotBlobUri": f"{self.url}/blobs/{name}.screenshot.bmp?sv=1&sig=secret",
                             "serialConsoleLogBlobUri": f"{self.url}/blobs/{name}.serialconsole.log?sv=1&sig=secret"}
        raise ArmError(405, "MethodNotAllowed", f"{method} {path}")

    def _blob(self, path, query):
        if query.get("sig") != ["secret"]:
            raise ArmError(403, "AuthenticationFailed", "bad SAS")
        name = path[len("/blobs/"):].split(".", 1)[0]
        vm = self.get(rid("rg-broken", "virtualMachines", name))
        os_disk = vm["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"]
        if path.endswith(".bmp"):
            return 200, {"Content-Type": "image/bmp"}, b"BM" + os_disk.encode()
        return 200, {"Content-Type": "text/plain"}, f"Windows booted from {os_disk}\n".encode()

    def _power_op(self, vm, action):
        key = vm["id"].lower()
        if action == "deallocate":
            self.power[key] = "deallocating"
            final = "deallocated"
        else:
            if self.power[key] == "running":
                raise ArmError(409, "OperationNotAllowed", "the VM is already running")
            self.power[key] = "starting"
            final = "running"

        def done():
            self.power[key] = final
        return 202, self._operation(vm["location"], done), None

    def _put(self, kind, resource_id, body):
        if not isinstance(body, dict) or not body.get("location"):
            raise ArmError(400, "InvalidRequestContent", "location is required")
        existing = self.get(resource_id)
        name = resource_id.rsplit("/", 1)[1]
        if kind in ("disks", "snapshots"):
            if existing is not None:
                raise ArmError(409, "Conflict", "this fake serves creation only")
            return self._create_disk(kind, resource_id, name, body)
        if kind == "virtualMachines":
            if existing is None:
                raise ArmError(404, "ResourceNotFound", "this fake does not create VMs")
            return self._update_vm(existing, body)
        raise ArmError(404, "NotFound", kind)

    def _create_disk(self, kind, resource_id, name, body):
        props = body.get("properties") or {}
        creation = props.get("creationData") or {}
        source = self.get(creation.get("sourceResourceId") or "")
        want = "disks" if kind == "snapshots" else "snapshots"
        if creation.get("createOption") != "Copy" or source is None or f"/{want}/" not in source["id"]:
            raise ArmError(404 if source is None else 400, "NotFound" if source is None else "BadRequest",
                           f"source {creation.get('sourceResourceId')} not found or not a {want[:-1]}")
        sku = (body.get("sku") or {}).get("name", "Standard_LRS")
        if kind == "disks" and sku not in SKUS:
            raise ArmError(400, "InvalidParameter", f"sku {sku}")
        if source["location"] != body["location"]:
            raise ArmError(400, "BadRequest", "copy must stay in the source's region")
        stored = {"id": resource_id, "name": name, "type": f"Microsoft.Compute/{kind}", "location": body["location"],
                  "sku": {"name": sku}, "tags": body.get("tags") or {},
                  "properties": {**props, "diskSizeGB": source["properties"]["diskSizeGB"],
                                 "provisioningState": "Creating"}}
        if body.get("zones"):
            stored["zones"] = body["zones"]
        if kind == "disks":
            stored["properties"]["diskState"] = "Unattached"
        self.resources[resource_id.lower()] = stored

        def done():
            stored["properties"]["provisioningState"] = "Succeeded"
        return 202, self._operation(body["location"], done), stored  # Disks_CreateOrUpdate: 200 | 202

    def _update_vm(self, vm, body):
        key = vm["id"].lower()
        storage = (body.get("properties") or {}).get("storageProfile") or {}
        new_os = ((storage.get("osDisk") or {}).get("managedDisk") or {}).get("id")
        old_os = vm["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"]
        data = storage.get("dataDisks") or []
        luns = [d.get("lun") for d in data]
        if len(set(luns)) != len(luns):
            raise ArmError(400, "InvalidParameter", "duplicate LUN")
        wanted = [new_os] + [(d.get("managedDisk") or {}).get("id") for d in data]
        for disk_id in wanted:
            disk = self.get(disk_id or "")
            if disk is None:
                raise ArmError(404, "NotFound", f"Disk {disk_id} not found")
            if disk.get("managedBy") and disk["managedBy"].lower() != key:
                raise ArmError(409, "Conflict", f"Disk {disk_id} is attached to VM {disk['managedBy']}")
            if disk.get("zones") and disk["zones"] != vm.get("zones"):
                raise ArmError(400, "BadRequest", "disk and VM are in different zones")
            if disk["location"] != vm["location"]:
                raise ArmError(400, "BadRequest", "disk and VM are in different regions")
        if new_os.lower() != old_os.lower() and self.power[key] != "deallocated":
            raise ArmError(409, "OperationNotAllowed", "the OS disk can only be swapped on a deallocated VM")
        props = {k: v for k, v in body["properties"].items() if k not in ("provisioningState", "vmId", "instanceView")}
        vm["properties"]["provisioningState"] = "Updating"
        before = [old_os] + [d["managedDisk"]["id"] for d in vm["properties"]["storageProfile"]["dataDisks"]]

        def done():
            for disk_id in before:
                disk = self.get(disk_id)
                disk.pop("managedBy", None)
                disk["properties"]["diskState"] = "Unattached"
            vm["properties"].update(props)
            vm["properties"]["provisioningState"] = "Succeeded"
            for disk_id in wanted:
                self._attach_disk(disk_id, vm["id"])
        return 200, self._operation(vm["location"], done), vm


def _certificate(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-arm.test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "arm.pem", tmp_path / "arm.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def arm_server(tmp_path_factory):
    fake_holder = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _serve(self, method):
            fake = fake_holder["fake"]
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
                with fake.lock:
                    status, headers, payload = fake.handle(method, url.path, parse_qs(url.query),
                                                           self.headers, body)
            except ArmError as exc:
                status, headers, payload = exc.status, {}, {"error": {"code": exc.code, "message": exc.message}}
            except json.JSONDecodeError:
                status, headers, payload = 400, {}, {"error": {"code": "InvalidJson", "message": "bad JSON"}}
            fake.log.append((method, url.path, status))
            data = payload if isinstance(payload, bytes) else (b"" if payload is None else json.dumps(payload).encode())
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            if not isinstance(payload, bytes):
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._serve("GET")

        def do_PUT(self):
            self._serve("PUT")

        def do_POST(self):
            self._serve("POST")

    cert_path, key_path = _certificate(tmp_path_factory.mktemp("arm"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, fake_holder, f"https://127.0.0.1:{server.server_address[1]}", str(cert_path)
    server.shutdown()
    server.server_close()


class StaticCredential:
    """A TokenCredential with a fixed token (azure.core.credentials protocol)."""

    def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken

        return AccessToken(TOKEN, int(time.time()) + 3600)


class WrongCredential:
    def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken

        return AccessToken("not-the-token", int(time.time()) + 3600)


@pytest.fixture
def world(arm_server):
    from azure.mgmt.compute import ComputeManagementClient

    server, holder, url, ca = arm_server
    fake = FakeArm()
    fake.url = url
    holder["fake"] = fake
    original = fake.add_disk("rg-broken", "broken-os", zones=["2"])
    fake.add_vm("rg-broken", "broken", os_disk=original, zones=["2"])
    helper_os = fake.add_disk("rg-helper", "helper-os", zones=["2"], security=None)
    busy = fake.add_disk("rg-helper", "helper-data", zones=["2"], security=None, size=32)
    fake.add_vm("rg-helper", "helper", os_disk=helper_os, zones=["2"], data_disks=[
        {"lun": 0, "name": "helper-data", "createOption": "Attach", "managedDisk": {"id": busy}}])
    # polling_interval: the SDK waits this long when Retry-After is 0 (it treats 0 as "not given").
    client = ComputeManagementClient(StaticCredential(), SUB, base_url=url, connection_verify=ca,
                                     credential_scopes=["https://management.azure.com/.default"], polling_interval=0)
    return fake, client, ca, original


def make(world, tmp_path, hook=None, calls=None, state=None):
    fake, client, ca, _ = world
    state = state or State.new("azure", {"resource_group": "rg-broken", "vm": "broken", "helper": "helper",
                                         "helper_resource_group": "rg-helper"}, tmp_path / "az.json")
    return AzureAdapter(client, state, calls=calls or Calls(), hook=hook,
                        download=lambda url: download_blob(url, verify=ca))


def os_disk_of(fake, rg, vm):
    return fake.get(rid(rg, "virtualMachines", vm))["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"]


def data_disks_of(fake, rg, vm):
    return [(d["lun"], d["managedDisk"]["id"])
            for d in fake.get(rid(rg, "virtualMachines", vm))["properties"]["storageProfile"]["dataDisks"]]


def test_rescue_then_restore(world, tmp_path):
    fake, _, _, original = world
    adapter = make(world, tmp_path)
    result = adapter.rescue()
    snap = fake.get(result["snapshot_id"])
    copy = fake.get(result["copy_id"])
    # snapshot of the OS disk, and a copy made from the snapshot with the original's placement and type
    assert snap["properties"]["creationData"] == {"createOption": "Copy", "sourceResourceId": original}
    assert copy["properties"]["creationData"]["sourceResourceId"] == result["snapshot_id"]
    orig = fake.get(original)
    assert (copy["location"], copy["zones"], copy["sku"]["name"]) == (orig["location"], orig["zones"], orig["sku"]["name"])
    assert copy["properties"]["hyperVGeneration"] == "V2"
    assert copy["properties"]["securityProfile"] == {"securityType": "TrustedLaunch"}
    assert copy["properties"]["provisioningState"] == "Succeeded"
    # attached to the helper at the first free LUN (0 is taken)
    assert result["helper_lun"] == 1
    assert (1, result["copy_id"]) in data_disks_of(fake, "rg-helper", "helper")
    assert copy["managedBy"].endswith("/virtualMachines/helper")
    # the broken VM was not touched
    assert fake.power[rid("rg-broken", "virtualMachines", "broken").lower()] == "running"
    # the SDK really polled: every operation answered InProgress once before Succeeded
    polls = [p for m, p, s in fake.log if "/operations/" in p]
    assert len(polls) == 2 * len([1 for m, p, s in fake.log if m == "PUT"])

    out = make(world, tmp_path, state=State.load(tmp_path / "az.json")).restore()
    assert data_disks_of(fake, "rg-helper", "helper") == [(0, rid("rg-helper", "disks", "helper-data"))]
    assert os_disk_of(fake, "rg-broken", "broken") == result["copy_id"]
    assert fake.power[rid("rg-broken", "virtualMachines", "broken").lower()] == "running"
    assert fake.get(original)["properties"]["diskState"] == "Unattached"  # kept, as the undo
    serial = open(out["evidence"]["serial.txt"]["saved"], encoding="utf-8").read()
    assert serial == f"Windows booted from {result['copy_id']}\n"
    assert out["evidence"]["screenshot.bmp"]["saved"].endswith(".screenshot.bmp")
    text = (tmp_path / "az.json").read_text()
    assert "sig=" not in text and TOKEN not in text  # the SAS URLs and the token never reach the state


def test_crash_then_resume_creates_nothing_twice(world, tmp_path):
    fake, *_ = world
    with pytest.raises(Interrupted):
        make(world, tmp_path, hook=stop_after("rescue.copy")).rescue()
    assert data_disks_of(fake, "rg-helper", "helper") == [(0, rid("rg-helper", "disks", "helper-data"))]
    result = make(world, tmp_path, state=State.load(tmp_path / "az.json")).rescue()
    assert len(fake.puts("/snapshots/")) == 1 and len(fake.puts("/disks/")) == 1
    assert (1, result["copy_id"]) in data_disks_of(fake, "rg-helper", "helper")


def test_crash_inside_a_step_is_idempotent(world, tmp_path):
    """The PUT of the copy went through, but the process died before recording it."""
    fake, *_ = world
    adapter = make(world, tmp_path)
    real = adapter._lro

    def lro_then_die(kind, op, *args, body=None):
        real(kind, op, *args, body=body)
        if kind == "disks":
            raise Interrupted("after disks.begin_create_or_update")
    adapter._lro = lro_then_die
    with pytest.raises(Interrupted):
        adapter.rescue()
    assert State.load(tmp_path / "az.json").step("rescue.copy")["status"] == "started"
    make(world, tmp_path, state=State.load(tmp_path / "az.json")).rescue()
    assert len(fake.puts("/disks/")) == 1


def test_abort_after_restore_swaps_the_original_back(world, tmp_path):
    fake, _, _, original = world
    make(world, tmp_path).rescue()
    make(world, tmp_path, state=State.load(tmp_path / "az.json")).restore()
    out = make(world, tmp_path, state=State.load(tmp_path / "az.json")).abort()
    assert os_disk_of(fake, "rg-broken", "broken") == original
    assert fake.power[rid("rg-broken", "virtualMachines", "broken").lower()] == "running"
    assert len(out["kept"]) == 2


def test_abort_after_half_done_rescue(world, tmp_path):
    fake, _, _, original = world
    with pytest.raises(Interrupted):
        make(world, tmp_path, hook=stop_after("rescue.attach-helper")).rescue()
    assert len(data_disks_of(fake, "rg-helper", "helper")) == 2
    make(world, tmp_path, state=State.load(tmp_path / "az.json")).abort()
    assert data_disks_of(fake, "rg-helper", "helper") == [(0, rid("rg-helper", "disks", "helper-data"))]
    assert os_disk_of(fake, "rg-broken", "broken") == original
    assert State.load(tmp_path / "az.json").phase == "aborted"


def test_dry_run_changes_nothing(world, tmp_path):
    fake, *_ = world
    calls = Calls(dry_run=True)
    state = State.new("azure", {"resource_group": "rg-broken", "vm": "broken", "helper": "helper",
                                "helper_resource_group": "rg-helper"}, None)
    make(world, tmp_path, calls=calls, state=state).rescue()
    assert [m for m, _, _ in fake.log if m != "GET"] == []
    assert [c.split("(")[0] for c in calls.planned] == [
        "snapshots.begin_create_or_update", "disks.begin_create_or_update", "virtual_machines.begin_create_or_update"]
    assert "dataDisks=[(0," in calls.planned[2] and ", (1, " in calls.planned[2]


def test_other_zone_is_refused(world, tmp_path):
    fake, *_ = world
    fake.get(rid("rg-helper", "virtualMachines", "helper"))["zones"] = ["1"]
    with pytest.raises(Refused, match="zone 2 but the helper in 1"):
        make(world, tmp_path).rescue()
    assert not (tmp_path / "az.json").exists()
    assert [m for m, _, _ in fake.log if m != "GET"] == []


def test_unknown_vm_and_bad_token(world, tmp_path, arm_server):
    from azure.mgmt.compute import ComputeManagementClient

    fake, client, ca, _ = world
    state = State.new("azure", {"resource_group": "rg-broken", "vm": "nope", "helper": "helper"}, None)
    with pytest.raises(NotFound, match="not found"):
        AzureAdapter(client, state).rescue()
    bad = ComputeManagementClient(WrongCredential(), SUB, base_url=fake.url, connection_verify=ca,
                                  credential_scopes=["https://management.azure.com/.default"])
    with pytest.raises(PermissionDenied):
        AzureAdapter(bad, State.new("azure", {"resource_group": "rg-broken", "vm": "broken", "helper": "helper"},
                                    None)).rescue()


def test_pure_helpers():
    assert free_lun({"properties": {"storageProfile": {"dataDisks": [{"lun": 0}, {"lun": 2}]}}}) == 1
    assert parse_id(rid("RG", "disks", "d1"))["name"] == "d1"
    assert len(resource_name("x" * 100, "20240101000000", "offline-fix-copy")) == 80
    with pytest.raises(NotFound):
        parse_id("/subscriptions/x/whatever")


@pytest.fixture
def cli_world(world, monkeypatch):
    """The CLI with its client factory pointed at the fake ARM (credentials are the only stand-in)."""
    import offline_fix.cli.cloud as cli_cloud

    fake, client, ca, original = world
    monkeypatch.setattr(cli_cloud, "_compute", lambda sub, endpoint: client)
    monkeypatch.setattr(cli_cloud, "_download", lambda url: download_blob(url, verify=ca))
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUB)
    return world


def test_cli_rescue_status_dry_run_abort(cli_world, tmp_path, capsys):
    fake, _, _, original = cli_world
    sf = str(tmp_path / "az.json")
    assert main(["cloud", "azure", "rescue", "-g", "rg-broken", "--vm", "broken", "--helper", "helper",
                 "--helper-resource-group", "rg-helper", "--state", sf, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["helper_lun"] == 1 and doc["phase"] == "rescued"
    assert main(["cloud", "azure", "status", "--state", sf, "--json"]) == 0
    live = json.loads(capsys.readouterr().out)["live"]
    assert live["copy_on_helper_lun"] == 1 and live["power"] == "running" and live["os_disk"] == original
    puts_before = len(fake.puts(""))
    assert main(["cloud", "azure", "abort", "--state", sf, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "virtual_machines.begin_create_or_update('rg-helper', 'helper'" in printed
    assert len(fake.puts("")) == puts_before and State.load(sf).phase == "rescued"
    assert main(["cloud", "azure", "abort", "--state", sf]) == 0
    assert data_disks_of(fake, "rg-helper", "helper") == [(0, rid("rg-helper", "disks", "helper-data"))]


def test_cli_missing_subscription_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID", raising=False)
    code = main(["cloud", "azure", "rescue", "-g", "rg", "--vm", "v", "--helper", "h", "--state",
                 str(tmp_path / "s.json")])
    err = capsys.readouterr().err
    assert code == 7 and "AZURE_SUBSCRIPTION_ID" in err and "Traceback" not in err
