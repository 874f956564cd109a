"""A simulated phone as a BLE peripheral: advertises, serves the passbridge GATT service.

The phone is the GATT server (bleak, on the bridge, can only be a central).
It advertises the passbridge service UUID with its rotating identifier, and
answers each framed command written to the request characteristic with a
framed response notified on the response characteristic, computed by a
``process(bytes) -> bytes`` handler: the PhoneApplet of the Aliro-style
authentication, or any stand-in.

A real phone misbehaves, so this one can be told to: answer slowly, not at
all, with broken framing, with a wrong (well-framed) answer, or drop the link
after some number of commands; stop advertising; rotate its identifier and
address. Its RSSI as heard by the bridge is set here, on the simulated air.

Rogue devices that advertise the passbridge service are simulated too
(``Rogue``): one that accepts the connection and then never answers any GATT
request (not even the MTU exchange or service discovery), and one that
advertises but never accepts a connection at all.

Simulation only; production code never imports this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from bumble import att, hci
from bumble.core import UUID
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service

from passbridge.protocol.ble_advert import advertising_data, new_adv_id, scan_response_data
from passbridge.protocol.ble_framing import (
    REQUEST_CHAR_UUID,
    RESPONSE_CHAR_UUID,
    SERVICE_UUID,
    FramingError,
    MessageAssembler,
    frame_message,
)
from passbridge.sim.bleak_bumble import BumbleAir

log = logging.getLogger(__name__)


class Fault(enum.Enum):
    """How the phone gets its answers wrong."""

    NONE = "none"
    SILENT = "silent"  # reads the command, never answers
    GARBLED = "garbled"  # answers with chunks that break the framing
    WRONG = "wrong"  # well-framed answer with one byte changed
    DROP = "drop"  # drops the link instead of answering


class Rogue(enum.Enum):
    """How a hostile peripheral stalls a bridge before any command."""

    NONE = "none"
    MUTE_GATT = "mute_gatt"  # accepts the connection, never answers a GATT request
    UNCONNECTABLE = "unconnectable"  # advertises, never accepts a connection


def random_static_address() -> str:
    """A random static BLE address (top two bits set), as phones use."""
    raw = bytearray(secrets.token_bytes(6))
    raw[0] |= 0xC0
    return ":".join(f"{b:02X}" for b in raw)


class SimulatedBlePhone:
    """One phone on a :class:`BumbleAir`; ``await start()`` before use."""

    def __init__(
        self,
        air: BumbleAir,
        process: Callable[[bytes], bytes],
        *,
        rssi: int = -50,
        adv_id: bytes | None = None,
        address: str | None = None,
        advertising_interval_ms: float = 20.0,
        rogue: Rogue = Rogue.NONE,
    ) -> None:
        self.air = air
        self.rogue = rogue
        #: ATT requests a MUTE_GATT rogue swallowed (proof the bridge asked).
        self.gatt_requests_ignored = 0
        self.process = process
        self.delay = 0.0
        self.fault = Fault.NONE
        #: Fault applies from this command on (1 = the first); earlier ones are answered.
        self.fault_from = 1
        self.commands_seen = 0
        self.connections_made = 0
        self._rssi = rssi
        self._adv_id = adv_id if adv_id is not None else new_adv_id()
        self._address = address or random_static_address()
        self._interval = advertising_interval_ms
        self._placement: dict[str, int] | None = None
        self._device: Device = air.add_device(self._address)
        self._assemblers: dict[int, MessageAssembler] = {}
        self._connections: dict[int, Connection] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._advertising = False
        self._response: Characteristic[bytes] = Characteristic(
            UUID(RESPONSE_CHAR_UUID),
            Characteristic.Properties.NOTIFY,
            Characteristic.READABLE,
            b"",
        )
        self._request: Characteristic[bytes] = Characteristic(
            UUID(REQUEST_CHAR_UUID),
            Characteristic.Properties.WRITE,
            Characteristic.WRITEABLE,
            CharacteristicValue(write=self._on_write),
        )
        self._device.add_service(Service(UUID(SERVICE_UUID), [self._request, self._response]))
        self._device.on("connection", self._on_connection)
        # Every ATT PDU passes here first, so a MUTE_GATT rogue can drop them.
        self._device.l2cap_channel_manager.register_fixed_channel(att.ATT_CID, self._on_att_pdu)
        air.set_rssi(self._address, rssi)
        air.set_connectable(self._address, rogue is not Rogue.UNCONNECTABLE)

    @property
    def adv_id(self) -> bytes:
        return self._adv_id

    @property
    def address(self) -> str:
        return self._address

    @property
    def rssi(self) -> int:
        return self._rssi

    @rssi.setter
    def rssi(self, value: int) -> None:
        self._rssi = value
        self.air.set_rssi(self._address, value)

    def place(self, rssi_by_radio: Mapping[str, int] | None) -> None:
        """Which door radios hear the phone, and how strongly (None: all of
        them, at ``rssi``); follows the phone across address rotations."""
        self._placement = None if rssi_by_radio is None else dict(rssi_by_radio)
        self.air.place(self._address, self._placement)

    @property
    def open_connections(self) -> int:
        """Links currently up; a clean bridge leaves this at 0 after a session."""
        return len(self._connections)

    @property
    def advertising(self) -> bool:
        return self._advertising

    async def start(self) -> None:
        await self._device.power_on()
        await self.start_advertising()

    async def start_advertising(self) -> None:
        await self._device.start_advertising(
            advertising_data=advertising_data() + scan_response_data(self._adv_id),
            scan_response_data=scan_response_data(self._adv_id),
            advertising_interval_min=self._interval,
            advertising_interval_max=self._interval,
            auto_restart=True,  # phones keep advertising around connections
        )
        self._advertising = True

    async def stop_advertising(self) -> None:
        self._advertising = False
        await self._device.stop_advertising()

    async def rotate(self, adv_id: bytes | None = None) -> bytes:
        """New rotating id and new address, as a phone does every few minutes.

        ``adv_id``: the id of the new time slot (an enrolled phone's
        ``rotating_id``); None draws a random one (a phone the site does
        not know, or a test advertiser)."""
        was_advertising = self._advertising
        if was_advertising:
            await self.stop_advertising()
        self.air.set_rssi(self._address, None)
        self.air.place(self._address, None)
        self.air.set_connectable(self._address, True)
        self._address = random_static_address()
        self.air.set_connectable(self._address, self.rogue is not Rogue.UNCONNECTABLE)
        self._adv_id = adv_id if adv_id is not None else new_adv_id()
        address = hci.Address(self._address)
        command = hci.HCI_LE_Set_Random_Address_Command(random_address=address)
        await self._device.send_command(command)
        self._device.random_address = address
        self.air.set_rssi(self._address, self._rssi)
        self.air.place(self._address, self._placement)
        if was_advertising:
            await self.start_advertising()
        return self._adv_id

    async def drop_links(self) -> None:
        """Drop every link now (the phone walked away or its stack reset)."""
        for connection in list(self._connections.values()):
            with contextlib.suppress(Exception):
                await connection.disconnect()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await self.stop_advertising()
        await self.drop_links()

    # GATT server side

    def _on_att_pdu(self, connection_handle: int, pdu: bytes) -> None:
        # Even op codes travel client -> server: the requests a mute rogue drops.
        if self.rogue is Rogue.MUTE_GATT and pdu and not pdu[0] & 1:
            self.gatt_requests_ignored += 1
            return
        self._device.on_gatt_pdu(connection_handle, pdu)

    def _on_connection(self, connection: Connection) -> None:
        self.connections_made += 1
        handle = connection.handle
        self._connections[handle] = connection
        self._assemblers[handle] = MessageAssembler()

        def gone(*_: Any) -> None:
            self._connections.pop(handle, None)
            self._assemblers.pop(handle, None)

        connection.on("disconnection", gone)

    def _on_write(self, connection: Connection, value: bytes) -> None:
        assembler = self._assemblers.get(connection.handle)
        if assembler is None:
            return
        try:
            message = assembler.feed(bytes(value))
        except FramingError as exc:
            log.info("simulated phone: bad framing from the reader (%s); dropping the link", exc)
            self._spawn(self._disconnect(connection))
            return
        if message is not None:
            self._spawn(self._answer(connection, message))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _disconnect(self, connection: Connection) -> None:
        with contextlib.suppress(Exception):
            await connection.disconnect()

    async def _answer(self, connection: Connection, message: bytes) -> None:
        self.commands_seen += 1
        fault = self.fault if self.commands_seen >= self.fault_from else Fault.NONE
        if self.delay:
            await asyncio.sleep(self.delay)
        if fault is Fault.DROP:
            await self._disconnect(connection)
            return
        if fault is Fault.SILENT:
            return
        response = self.process(message)
        mtu = int(connection.att_mtu)
        if fault is Fault.WRONG:
            response = bytes((response[0] ^ 0x01,)) + response[1:]
        chunks = frame_message(response, mtu)
        if fault is Fault.GARBLED:
            chunks = [bytes((chunk[0] | 0x30,)) + chunk[1:] for chunk in chunks]
        for chunk in chunks:
            if connection.handle not in self._connections:
                return
            await self._device.notify_subscriber(connection, self._response, chunk)
