"""bleak backends that talk to bumble devices over an in-memory radio.

BlueZ cannot run on the machines this project is built and tested on, but the
production BLE code must still be exercised through bleak's own
``BleakScanner`` / ``BleakClient`` API against a real ATT/GATT stack. bleak
accepts a backend CLASS (``backend=``); this module makes those classes for a
:class:`BumbleAir`: one in-process bumble ``LocalLink`` on which the bridge's
central and any number of simulated phones (bumble devices with real GATT
servers) live. Everything below bleak's API is bumble's real host stack (HCI,
L2CAP, ATT, GATT client and server); only the controllers are virtual.

The virtual controllers report every advertisement at -50 dBm, so the air keeps
the RSSI each simulated phone is "at" and the scanner backend reports that
instead: the simulator, not the code under test, decides how far a phone is.
One air can stand for several door radios: ``scanner_backend_at(radio)``
is a scanner at one named radio, and ``place(address, {radio: rssi})``
says which radios hear a phone at all (a phone at the garage is not heard
at the front door).

Simulation only; production code never imports this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

from bleak.args import SizedBuffer
from bleak.assigned_numbers import CharacteristicPropertyName
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError
from bleak.uuids import normalize_uuid_str
from bumble import hci
from bumble.controller import Controller
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

log = logging.getLogger(__name__)

_BLUETOOTH_BASE = "-0000-1000-8000-00805f9b34fb"

_PROPERTY_NAMES: list[tuple[int, CharacteristicPropertyName]] = [
    (0x01, "broadcast"),
    (0x02, "read"),
    (0x04, "write-without-response"),
    (0x08, "write"),
    (0x10, "notify"),
    (0x20, "indicate"),
    (0x40, "authenticated-signed-writes"),
    (0x80, "extended-properties"),
]


def _uuid_text(raw_le: bytes) -> str:
    """bleak's normalised lowercase 128-bit form of a little-endian AD UUID."""
    value = raw_le[::-1].hex()
    if len(value) in (4, 8):
        return f"{int(value, 16):08x}{_BLUETOOTH_BASE}"
    return normalize_uuid_str(
        f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"
    )


def _bumble_uuid_text(uuid: Any) -> str:
    return _uuid_text(bytes(uuid.to_bytes(force_128=True)))


def advertisement_data(payload: bytes, rssi: int) -> AdvertisementData:
    """bleak's view of a raw advertising payload (AD structures)."""
    name: str | None = None
    manufacturer: dict[int, bytes] = {}
    service_data: dict[str, bytes] = {}
    uuids: list[str] = []
    tx_power: int | None = None
    offset = 0
    while offset < len(payload):
        length = payload[offset]
        if length == 0 or offset + 1 + length > len(payload):
            break
        ad_type = payload[offset + 1]
        value = bytes(payload[offset + 2 : offset + 1 + length])
        offset += 1 + length
        if ad_type in (0x08, 0x09):
            name = value.decode("utf-8", "replace")
        elif ad_type in (0x02, 0x03, 0x04, 0x05, 0x06, 0x07):
            size = {0x02: 2, 0x03: 2, 0x04: 4, 0x05: 4, 0x06: 16, 0x07: 16}[ad_type]
            for i in range(0, len(value) - size + 1, size):
                text = _uuid_text(value[i : i + size])
                if text not in uuids:
                    uuids.append(text)
        elif ad_type in (0x16, 0x20, 0x21):
            size = {0x16: 2, 0x20: 4, 0x21: 16}[ad_type]
            if len(value) >= size:
                service_data[_uuid_text(value[:size])] = value[size:]
        elif ad_type == 0xFF and len(value) >= 2:
            manufacturer[int.from_bytes(value[:2], "little")] = value[2:]
        elif ad_type == 0x0A and len(value) == 1:
            tx_power = int.from_bytes(value, "little", signed=True)
    return AdvertisementData(
        local_name=name,
        manufacturer_data=manufacturer,
        service_data=service_data,
        service_uuids=uuids,
        tx_power=tx_power,
        rssi=rssi,
        platform_data=(),
    )


class _Controller(Controller):
    """bumble's virtual controller, with LE Create Connection Cancel that works.

    The stock one acknowledges the cancel but keeps the connection pending and
    never reports its end, so a connect to a phone that stopped advertising
    hangs the host and blocks every later connect. A real controller clears
    the attempt and reports it with status Unknown Connection Identifier.

    ``connectable`` says whether an advertiser accepts a connection. bumble
    only simulates connectable advertising (ADV_IND), so a device that
    advertises but never accepts (a non-connectable ADV_SCAN_IND, or a rogue
    that ignores CONNECT_IND) is modelled here, on the initiating side: its
    advertisements are still reported to the scanner, but a pending
    connection to it never completes, exactly what a real initiator sees.
    """

    def __init__(
        self, name: str, *, connectable: Callable[[hci.Address], bool], **kwargs: Any
    ) -> None:
        super().__init__(name, **kwargs)
        self._connectable = connectable

    def on_advertising_pdu(self, pdu: Any) -> None:
        pending = self.pending_le_connection
        if pending is None or self._connectable(pdu.advertiser_address):
            super().on_advertising_pdu(pdu)
            return
        self.pending_le_connection = None  # report it, but do not connect to it
        try:
            super().on_advertising_pdu(pdu)
        finally:
            self.pending_le_connection = pending

    def on_hci_le_create_connection_cancel_command(
        self, command: hci.HCI_LE_Create_Connection_Cancel_Command
    ) -> Any:
        pending = self.pending_le_connection
        if pending is None:
            return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.COMMAND_DISALLOWED_ERROR)
        self.pending_le_connection = None
        event = hci.HCI_LE_Connection_Complete_Event(
            status=hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR,
            connection_handle=0,
            role=hci.Role.CENTRAL,
            peer_address_type=pending.peer_address.address_type,
            peer_address=pending.peer_address,
            connection_interval=0,
            peripheral_latency=0,
            supervision_timeout=0,
            central_clock_accuracy=0,
        )
        asyncio.get_running_loop().call_soon(self.send_hci_packet, event)
        return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.SUCCESS)


class BumbleAir:
    """One simulated radio space: a bumble LocalLink and who is on it.

    ``scanner_backend`` and ``client_backend`` are bleak backend classes bound
    to this air; pass them as ``backend=`` to BleakScanner / BleakClient.
    Create and use an air inside one running event loop.
    """

    def __init__(self, *, central_address: str = "C0:B0:00:00:00:01", mtu: int = 247) -> None:
        self.link = LocalLink()  # type: ignore[no-untyped-call]
        self.mtu = mtu
        self._central_address = central_address
        self._central: Device | None = None
        self._central_ready: asyncio.Lock | None = None
        self._rssi: dict[str, int] = {}
        # address -> {radio: rssi}: the only radios that hear a placed address.
        self._placed: dict[str, dict[str, int]] = {}
        self._unconnectable: set[str] = set()
        #: Connects the bridge started, by target address (a rogue that never
        #: accepts one leaves no other trace on the air).
        self.connect_attempts: Counter[str] = Counter()
        self._listeners: dict[int, Callable[[Advertisement], None]] = {}
        self._listener_ids = itertools.count()
        self._scanning = False
        air = self

        class Scanner(BumbleScannerBackend):
            _air = air

        class Client(BumbleClientBackend):
            _air = air

        self.scanner_backend: type[BaseBleakScanner] = Scanner
        self.client_backend: type[BaseBleakClient] = Client

    def add_device(self, address: str) -> Device:
        """A new bumble device (own virtual controller) on this air."""
        controller = _Controller(
            f"ctl-{address}",
            link=self.link,
            public_address=address,
            connectable=self.accepts_connections,
        )
        host = Host(controller, AsyncPipeSink(controller))
        return Device(address=hci.Address(address), host=host)

    def set_rssi(self, address: str, rssi: int | None) -> None:
        """The RSSI at which the bridge hears ``address`` (None: controller default)."""
        key = address.upper()
        if rssi is None:
            self._rssi.pop(key, None)
        else:
            self._rssi[key] = rssi

    def set_connectable(self, address: str, connectable: bool) -> None:
        """Whether ``address`` accepts connections (False: it advertises, and
        every connect to it waits until the initiator gives up)."""
        key = address.upper()
        if connectable:
            self._unconnectable.discard(key)
        else:
            self._unconnectable.add(key)

    def accepts_connections(self, address: hci.Address) -> bool:
        return address.to_string(False).upper() not in self._unconnectable

    def place(self, address: str, rssi_by_radio: Mapping[str, int] | None) -> None:
        """The radios that hear ``address`` and at what RSSI; every other
        radio does not hear it. None: heard by every radio (``set_rssi``)."""
        key = address.upper()
        if rssi_by_radio is None:
            self._placed.pop(key, None)
        else:
            self._placed[key] = dict(rssi_by_radio)

    def rssi_for(self, address: str, reported: int, radio: str | None = None) -> int | None:
        """The RSSI at which ``radio`` hears ``address``; None: not at all."""
        key = address.upper()
        placed = self._placed.get(key)
        if placed is not None and radio is not None:
            return placed.get(radio)
        return self._rssi.get(key, reported)

    def scanner_backend_at(self, radio: str) -> type[BaseBleakScanner]:
        """A bleak scanner backend for the door radio named ``radio`` on this air."""
        air = self

        class Scanner(BumbleScannerBackend):
            _air = air
            _radio = radio

        return Scanner

    async def central(self) -> Device:
        """The bridge's own radio, powered on at first use."""
        if self._central_ready is None:
            self._central_ready = asyncio.Lock()
        async with self._central_ready:
            if self._central is None:
                device = self.add_device(self._central_address)
                await device.power_on()
                device.on("advertisement", self._on_advertisement)
                self._central = device
        return self._central

    def _on_advertisement(self, advertisement: Advertisement) -> None:
        for listener in list(self._listeners.values()):
            listener(advertisement)

    async def listen(self, listener: Callable[[Advertisement], None]) -> int:
        central = await self.central()
        token = next(self._listener_ids)
        self._listeners[token] = listener
        if not self._scanning:
            self._scanning = True
            await central.start_scanning(filter_duplicates=False)
        return token

    async def unlisten(self, token: int) -> None:
        self._listeners.pop(token, None)
        if not self._listeners and self._scanning and self._central is not None:
            self._scanning = False
            await self._central.stop_scanning()

    async def close(self) -> None:
        """Drop every link of the central; the air is unusable afterwards."""
        central = self._central
        if central is None:
            return
        if self._scanning:
            self._scanning = False
            with contextlib.suppress(Exception):
                await central.stop_scanning()
        for connection in list(central.connections.values()):
            with contextlib.suppress(Exception):
                await connection.disconnect()


class BumbleScannerBackend(BaseBleakScanner):
    """bleak scanner backend over a :class:`BumbleAir` (use ``air.scanner_backend``)."""

    _air: ClassVar[BumbleAir]
    _radio: ClassVar[str | None] = None

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: Literal["active", "passive"] = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._token: int | None = None

    async def start(self) -> None:
        self.seen_devices = {}
        if self._token is None:
            self._token = await self._air.listen(self._on_advertisement)

    async def stop(self) -> None:
        if self._token is not None:
            token, self._token = self._token, None
            await self._air.unlisten(token)

    def _on_advertisement(self, advertisement: Advertisement) -> None:
        address = advertisement.address.to_string(False)
        rssi = self._air.rssi_for(address, advertisement.rssi, self._radio)
        if rssi is None:
            return  # out of this radio's range
        data = advertisement_data(bytes(advertisement.data_bytes), rssi)
        if not self.is_allowed_uuid(data.service_uuids):
            return
        device = self.create_or_update_device(
            address, address, data.local_name, advertisement.address, data
        )
        self.call_detection_callbacks(device, data)


class BumbleClientBackend(BaseBleakClient):
    """bleak client backend over a :class:`BumbleAir` (use ``air.client_backend``)."""

    _air: ClassVar[BumbleAir]

    def __init__(self, address_or_ble_device: BLEDevice | str, **kwargs: Any) -> None:
        super().__init__(
            address_or_ble_device,
            disconnected_callback=kwargs.pop("disconnected_callback", None),
            timeout=kwargs.pop("timeout", 10.0),
        )
        wanted = kwargs.get("services")
        self._wanted: set[str] | None = set(wanted) if wanted else None
        self._connection: Connection | None = None
        self._peer: Peer | None = None
        self._gone: asyncio.Event | None = None

    @property
    def name(self) -> str:
        return self.address

    @property
    def mtu_size(self) -> int:
        if self._peer is None:
            return 23
        return int(self._peer.gatt_client.mtu)

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        if self._connection is not None:
            return
        central = await self._air.central()
        self._air.connect_attempts[self.address.upper()] += 1
        try:
            connection = await central.connect(
                hci.Address(self.address), timeout=self._timeout
            )
        except asyncio.CancelledError:
            await self._abandon_connect(central)
            raise
        except Exception as exc:  # bumble's own error types become bleak's
            raise BleakError(f"could not connect to {self.address}: {exc!r}") from None
        self._connection = connection
        self._gone = asyncio.Event()
        connection.on("disconnection", self._on_disconnection)
        try:
            async with asyncio.timeout(self._timeout):
                peer = Peer(connection)
                self._peer = peer
                await peer.request_mtu(self._air.mtu)
                self.services = await self._discover(peer)
        except BaseException:
            await self.disconnect()
            raise

    async def _abandon_connect(self, central: Device) -> None:
        """A connect cancelled by its caller (a timeout above bleak) must not
        leave the controller's create-connection pending: bumble forgets it
        on the host side only, so every later connect would be refused. A
        real stack cancels the attempt, and drops a link that won the race."""
        with contextlib.suppress(Exception):
            await central.send_command(hci.HCI_LE_Create_Connection_Cancel_Command())
        await asyncio.sleep(0)  # let a completion that raced the cancel land
        late = central.find_connection_by_bd_addr(hci.Address(self.address))
        if late is not None:
            with contextlib.suppress(Exception):
                await late.disconnect()

    async def _discover(self, peer: Peer) -> BleakGATTServiceCollection:
        collection = BleakGATTServiceCollection()
        await peer.discover_services()
        for service in peer.services:
            uuid = _bumble_uuid_text(service.uuid)
            if self._wanted is not None and uuid not in self._wanted:
                continue
            bleak_service = BleakGATTService(service, service.handle, uuid)
            collection.add_service(bleak_service)
            await service.discover_characteristics()
            for characteristic in service.characteristics:
                await characteristic.discover_descriptors()
                names = [n for bit, n in _PROPERTY_NAMES if int(characteristic.properties) & bit]
                bleak_char = BleakGATTCharacteristic(
                    characteristic,
                    characteristic.handle,
                    _bumble_uuid_text(characteristic.uuid),
                    names,
                    self._max_write_size,
                    bleak_service,
                )
                collection.add_characteristic(bleak_char)
                for descriptor in characteristic.descriptors:
                    collection.add_descriptor(
                        BleakGATTDescriptor(
                            descriptor,
                            descriptor.handle,
                            _bumble_uuid_text(descriptor.type),
                            bleak_char,
                        )
                    )
        return collection

    def _max_write_size(self) -> int:
        return self.mtu_size - 3

    def _on_disconnection(self, *_: Any) -> None:
        self._connection = None
        self._peer = None
        self.services = None
        if self._gone is not None:
            self._gone.set()
        callback = self._disconnected_callback
        if callback is not None:
            callback()

    async def disconnect(self) -> None:
        connection, gone = self._connection, self._gone
        if connection is None:
            return
        # An explicit disconnect is not "unsolicited": bleak calls the
        # disconnected callback only for links the peer or the radio dropped.
        saved = self._disconnected_callback
        self._disconnected_callback = None
        try:
            with contextlib.suppress(Exception):
                await connection.disconnect()
            if gone is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._timeout):
                        await gone.wait()
        finally:
            self._disconnected_callback = saved
            self._connection = None
            self._peer = None

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise BleakError("pairing is not simulated: passbridge authenticates in the application")

    async def unpair(self) -> None:
        raise BleakError("pairing is not simulated")

    def _require_peer(self) -> Peer:
        if self._peer is None:
            raise BleakError("Not connected")
        return self._peer

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        peer = self._require_peer()
        return bytearray(await peer.read_value(characteristic.obj))

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        peer = self._require_peer()
        return bytearray(await peer.read_value(descriptor.obj))

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        peer = self._require_peer()
        await peer.write_value(characteristic.obj, bytes(data), with_response=response)

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        peer = self._require_peer()
        await peer.write_value(descriptor.obj, bytes(data), with_response=True)

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        peer = self._require_peer()

        def deliver(value: bytes) -> None:
            callback(bytearray(value))

        characteristic.obj._passbridge_subscriber = deliver
        await peer.subscribe(characteristic.obj, deliver)

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        peer = self._require_peer()
        subscriber = getattr(characteristic.obj, "_passbridge_subscriber", None)
        await peer.unsubscribe(characteristic.obj, subscriber)
