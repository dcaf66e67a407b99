"""Connectors to the customer directory and core banking, as the IVR's data dips use them.

The interface is small on purpose (lookups, PIN check, balance, last transactions, open
tickets); :class:`HttpDirectory` speaks the JSON API of the bundled sample service
(``ccengine ivr directory``) and is what a bank's adapter would implement. Secrets (PINs,
card numbers) only travel in request bodies, never in URLs, so no access log holds them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp

from .interpreter import Dip, DipResult
from .model import DIP_ARGS

log = logging.getLogger(__name__)


class DirectoryError(RuntimeError):
    """The directory failed or answered nonsense."""


class NotFound(DirectoryError):
    pass


class Directory(Protocol):
    async def lookup_caller(self, number: str) -> dict[str, Any]: ...
    async def lookup_account(self, account: str) -> dict[str, Any]: ...
    async def lookup_card(self, card: str) -> dict[str, Any]: ...
    async def verify_pin(self, account: str, pin: str) -> dict[str, Any]: ...
    async def balance(self, account: str) -> dict[str, Any]: ...
    async def transactions(self, account: str, limit: int = 5) -> dict[str, Any]: ...
    async def tickets(self, customer_id: str) -> dict[str, Any]: ...
    async def close(self) -> None: ...


class HttpDirectory:
    """The sample directory's HTTP API (``/v1/...``)."""

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")
        self._http: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self._http

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
                    params: dict[str, str] | None = None) -> dict[str, Any]:
        try:
            async with self._session().request(method, self.base_url + path, json=body, params=params) as resp:
                if resp.status == 404:
                    raise NotFound(path.split("/")[2] if path.count("/") > 1 else path)
                if resp.status >= 400:
                    raise DirectoryError(f"directory answered HTTP {resp.status}")
                data = await resp.json()
        except aiohttp.ClientError as exc:
            raise DirectoryError(f"directory unreachable: {type(exc).__name__}") from None
        if not isinstance(data, dict):
            raise DirectoryError("directory answered something other than an object")
        return data

    async def lookup_caller(self, number: str) -> dict[str, Any]:
        return await self._call("GET", f"/v1/customers/by-phone/{quote(number, safe='')}")

    async def lookup_account(self, account: str) -> dict[str, Any]:
        return await self._call("GET", f"/v1/accounts/{quote(account, safe='')}")

    async def lookup_card(self, card: str) -> dict[str, Any]:
        return await self._call("POST", "/v1/cards/lookup", {"card": card})

    async def verify_pin(self, account: str, pin: str) -> dict[str, Any]:
        return await self._call("POST", f"/v1/accounts/{quote(account, safe='')}/verify-pin", {"pin": pin})

    async def balance(self, account: str) -> dict[str, Any]:
        return await self._call("GET", f"/v1/accounts/{quote(account, safe='')}/balance")

    async def transactions(self, account: str, limit: int = 5) -> dict[str, Any]:
        return await self._call("GET", f"/v1/accounts/{quote(account, safe='')}/transactions",
                                params={"limit": str(limit)})

    async def tickets(self, customer_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/v1/customers/{quote(customer_id, safe='')}/tickets")

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()


class NoDirectory:
    """No directory configured: every dip fails, so trees take their fallback branches."""

    async def _fail(self, *_args: object) -> dict[str, Any]:
        raise DirectoryError("no customer directory configured (ivr.directory_url)")

    lookup_caller = lookup_account = lookup_card = balance = tickets = _fail

    async def verify_pin(self, account: str, pin: str) -> dict[str, Any]:
        return await self._fail()

    async def transactions(self, account: str, limit: int = 5) -> dict[str, Any]:
        return await self._fail()

    async def close(self) -> None:
        return None


_ARGS = {**DIP_ARGS, "verify_pin": ("account", "pin")}


async def run_dip(directory: Directory, dip: Dip) -> DipResult:
    """Execute ``dip`` within its timeout; never raises, never logs its arguments."""
    names = _ARGS.get(dip.operation)
    if names is None:
        return DipResult("error", {"error": f"unknown operation {dip.operation}"})
    args = [dip.args.get(name, "") for name in names]
    method = getattr(directory, dip.operation)
    try:
        data = await asyncio.wait_for(method(*args), dip.timeout)
    except TimeoutError:
        return DipResult("timeout")
    except NotFound:
        return DipResult("not_found")
    except DirectoryError as exc:
        log.info("data dip %s failed: %s", dip.operation, exc)
        return DipResult("error")
    return DipResult("ok", data)
