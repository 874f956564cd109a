"""The radio and network paths a scenario step drives, device edge onward.

- ``nfc``: a simulated phone card on nfcpy's udp driver, tapped by nfcpy's
  own reader code (adapters.nfc_reader) running the bridge's tap handler.
- ``ble``, ``nearby``: a simulated phone on a bumble link, seen and reached
  through bleak's API (adapters.ble_central).
- ``remote`` and ``nearby`` requests go through the real aiohttp app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from passbridge.adapters.nfc_reader import NfcReader
from passbridge.bridge.nfc_tap import AliroTapHandler, NfcDoorDecider, TapResult
from passbridge.core.decision import Decision
from passbridge.core.model import Factor, Reason
from passbridge.scenario.model import Step
from passbridge.sim.nfc_card import SimulatedCard

if TYPE_CHECKING:
    from passbridge.scenario.rig import ScenarioRig

TAP_TIMEOUT = 10.0


class RadioPaths:
    def __init__(self, rig: ScenarioRig) -> None:
        self._rig = rig

    async def perform(self, step: Step) -> Decision:
        if step.action == "nfc":
            return await self.nfc(step)
        raise NotImplementedError(f"the {step.action} action is not available yet")

    async def nfc(self, step: Step) -> Decision:
        rig = self._rig
        door, phone_id = step.args["door"], step.args["phone"]
        identity = rig.keystore.reader_identity()
        phone = rig.phones[phone_id]
        decider = NfcDoorDecider(rig.controller, door, step.side)
        card = SimulatedCard(phone.applet(identity.public_key).process)
        with card:
            reader: NfcReader[TapResult] = NfcReader(
                card.device,
                lambda: AliroTapHandler(identity, rig.keystore),
                decider=decider,
            )
            async with reader:
                outcome = await reader.tap_once(TAP_TIMEOUT)
        if outcome.result is not None and outcome.result.decision is not None:
            return outcome.result.decision
        # The tap broke before anything was decided: record that it was refused.
        detail = f"NFC tap failed: {outcome.error}" if outcome.error else "NFC tap failed"
        return await rig.controller.bridge_failure(
            door, step.side, Factor.NFC, Reason.UNKNOWN_CREDENTIAL, detail
        )

    async def close(self) -> None:
        return None
