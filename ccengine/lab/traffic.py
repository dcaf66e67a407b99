"""Traffic generator: drives the lab ``peer`` over its own AMI, the way SIPp would.

Customers are originated from ``peer`` towards the switch over the PJSIP
trunk; the switch sees a carrier call. How each customer behaves (when it
presses which digit, how long it is willing to stay) travels as channel
variables that ``dialplans/asterisk/peer.conf`` acts on.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..config import Settings
from ..pbx.asterisk.ami import AmiClient


@dataclass(frozen=True)
class Customer:
    number: str
    dialed: str = "100"
    digit: str = "1"
    prompt_wait: float = 1.0
    patience: float = 60.0
    press: str = ""  # pressed ``press_after`` seconds after ``digit`` (e.g. "1" to accept a callback)
    press_after: float | None = None
    script: str = ""  # DTMF script sent before ``digit`` (see :func:`dtmf_script`)
    speech: str = ""  # sound file (absolute path, no extension) spoken once an agent answers
    pay: str = ""  # DTMF script keyed into a secure payment once the global PAY_<number> is set


def dtmf_script(*parts: str | float) -> str:
    """A DTMF script for the peer's SendDTMF: strings are keys, numbers are pauses in seconds
    (rounded to half seconds), e.g. ``dtmf_script("1", 2, "12345678#")``."""
    out = []
    for part in parts:
        if isinstance(part, str):
            if any(ch not in "0123456789*#ABCD" for ch in part):
                raise ValueError(f"not DTMF keys: {part!r}")
            out.append(part)
        else:
            halves = max(0, round(part * 2))
            out.append("W" * (halves // 2) + "w" * (halves % 2))
    return "".join(out)


class PeerDriver:
    def __init__(self, settings: Settings):
        lab = settings.lab
        self.ami = AmiClient("127.0.0.1", lab.peer.ami_port, lab.peer_ami_username, lab.peer_ami_secret,
                             events="call")

    async def __aenter__(self) -> PeerDriver:
        async def ignore(_up: bool, _reason: str) -> None:
            return None

        await asyncio.wait_for(self.ami.start(ignore), timeout=15)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.ami.close()

    async def call(self, customer: Customer) -> None:
        """Place one customer call (returns once the peer accepted the request)."""
        await self.ami.action({
            "Action": "Originate",
            "Channel": f"PJSIP/{customer.dialed}@pbx",
            "Context": "customer", "Exten": "s", "Priority": "1",
            "CallerID": f'"Customer {customer.number}" <{customer.number}>',
            "Timeout": "30000", "Async": "true",
            "Variable": [f"PROMPT_WAIT={customer.prompt_wait:.1f}", f"DIGIT={customer.digit}",
                         f"PATIENCE={customer.patience:.0f}", f"PRESS={customer.press}",
                         f"SCRIPT={customer.script}", f"SPEECH={customer.speech}", f"PAY={customer.pay}",
                         f"PRESS_AFTER={'' if customer.press_after is None else f'{customer.press_after:.1f}'}"],
        })

    async def set_global(self, name: str, value: str) -> None:
        await self.ami.action({"Action": "Setvar", "Variable": name, "Value": value})

    async def agent_talk_time(self, low: float, high: float) -> None:
        await self.set_global("AGENT_TALK_MIN", f"{int(low)}")
        await self.set_global("AGENT_TALK_MAX", f"{int(high)}")

    async def agent_script(self, caller_number: str, sound: str) -> None:
        """The softphone answering a call from ``caller_number`` plays ``sound`` and then hangs up."""
        await self.set_global(f"AGENT_SCRIPT_{caller_number}", sound)

    async def active_channels(self) -> int:
        rows = await self.ami.action({"Action": "CoreShowChannels"}, as_list=True)
        return sum(1 for r in rows if r.get("Event") == "CoreShowChannel")
