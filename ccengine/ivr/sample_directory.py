"""A small customer directory / core-banking service for the lab and the tests (aiohttp).

It stands in for a bank's CRM and core system behind :class:`~.connectors.HttpDirectory`:
customers found by phone number, account or card, PIN checks with a lockout after three
failures, balances, last transactions and open tickets. ``/admin/delay`` makes every answer
slow, or only one operation's (to exercise dip timeouts) and ``/admin/stats`` counts requests by operation. PINs and
card numbers arrive in request bodies and are never logged (the access log is off).
"""

from __future__ import annotations

import asyncio
import copy
import hmac
from collections import Counter
from typing import Any

from aiohttp import web

MAX_PIN_FAILURES = 3

SAMPLE: dict[str, Any] = {
    "customers": [
        {"id": "c-1001", "name": "Ada Lovelace", "segment": "premier", "risk": "low",
         "phones": ["5551001", "5551002", "5551003", "5551004", "5551005", "5551006"],
         "accounts": {"12345678": {"pin": "2468", "balance": "1520.75", "currency": "dollars",
                                   "transactions": [{"date": "2026-11-20", "amount": "-42.10", "text": "Grocer"},
                                                    {"date": "2026-11-18", "amount": "2300.00", "text": "Salary"}]}},
         "cards": ["4539578763621486"],
         "tickets": [{"id": "T-77", "subject": "Card replacement", "status": "open"}]},
        {"id": "c-2002", "name": "Alan Turing", "segment": "retail", "risk": "low",
         "phones": ["5552001"],
         "accounts": {"87654321": {"pin": "1357", "balance": "88.00", "currency": "dollars", "transactions": []}},
         "cards": ["4916338506082832"], "tickets": []},
    ]
}


class DirectoryService:
    def __init__(self, data: dict[str, Any] | None = None):
        self.data = copy.deepcopy(data or SAMPLE)
        self.delay = 0.0
        self.delays: dict[str, float] = {}  # handler name (balance, verify_pin, ...) → seconds
        self.failures: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self._by_phone: dict[str, dict[str, Any]] = {}
        self._by_account: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        self._by_card: dict[str, dict[str, Any]] = {}
        for customer in self.data["customers"]:
            for phone in customer.get("phones", []):
                self._by_phone[phone] = customer
            for number, account in customer.get("accounts", {}).items():
                self._by_account[number] = (customer, account)
            for card in customer.get("cards", []):
                self._by_card[card] = customer

    @staticmethod
    def _public(customer: dict[str, Any]) -> dict[str, Any]:
        return {k: customer[k] for k in ("id", "name", "segment", "risk") if k in customer}

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._slow])
        app.add_routes([
            web.get("/v1/customers/by-phone/{number}", self.by_phone),
            web.get("/v1/customers/{id}/tickets", self.tickets),
            web.get("/v1/accounts/{account}", self.account),
            web.post("/v1/accounts/{account}/verify-pin", self.verify_pin),
            web.get("/v1/accounts/{account}/balance", self.balance),
            web.get("/v1/accounts/{account}/transactions", self.transactions),
            web.post("/v1/cards/lookup", self.card),
            web.post("/admin/delay", self.set_delay),
            web.post("/admin/reset", self.reset),
            web.get("/admin/stats", self.get_stats),
        ])
        return app

    @web.middleware
    async def _slow(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith("/admin/"):
            self.stats[getattr(handler, "__name__", request.path)] += 1
            delay = self.delays.get(getattr(handler, "__name__", ""), self.delay)
            if delay:
                await asyncio.sleep(delay)
        response: web.StreamResponse = await handler(request)
        return response

    def _account(self, request: web.Request) -> tuple[dict[str, Any], dict[str, Any]]:
        found = self._by_account.get(request.match_info["account"])
        if found is None:
            raise web.HTTPNotFound(text='{"error": "no such account"}', content_type="application/json")
        return found

    async def by_phone(self, request: web.Request) -> web.Response:
        customer = self._by_phone.get(request.match_info["number"])
        if customer is None:
            raise web.HTTPNotFound(text='{"error": "unknown caller"}', content_type="application/json")
        return web.json_response({"customer": self._public(customer)})

    async def account(self, request: web.Request) -> web.Response:
        customer, _ = self._account(request)
        return web.json_response({"customer": self._public(customer),
                                  "locked": self.failures[request.match_info["account"]] >= MAX_PIN_FAILURES})

    async def verify_pin(self, request: web.Request) -> web.Response:
        number = request.match_info["account"]
        customer, account = self._account(request)
        body = await request.json()
        pin = str(body.get("pin", "")) if isinstance(body, dict) else ""
        if self.failures[number] >= MAX_PIN_FAILURES:
            return web.json_response({"verified": False, "locked": True, "customer": self._public(customer)})
        if hmac.compare_digest(pin.encode(), str(account["pin"]).encode()):
            self.failures[number] = 0
            return web.json_response({"verified": True, "locked": False, "customer": self._public(customer)})
        self.failures[number] += 1
        locked = self.failures[number] >= MAX_PIN_FAILURES
        return web.json_response({"verified": False, "locked": locked, "failures": self.failures[number]})

    async def balance(self, request: web.Request) -> web.Response:
        _, account = self._account(request)
        return web.json_response({"amount": account["balance"], "currency": account["currency"]})

    async def transactions(self, request: web.Request) -> web.Response:
        _, account = self._account(request)
        limit = int(request.query.get("limit", "5"))
        return web.json_response({"transactions": account["transactions"][:limit]})

    async def tickets(self, request: web.Request) -> web.Response:
        customer = next((c for c in self.data["customers"] if c["id"] == request.match_info["id"]), None)
        if customer is None:
            raise web.HTTPNotFound(text='{"error": "no such customer"}', content_type="application/json")
        return web.json_response({"tickets": [t for t in customer["tickets"] if t["status"] == "open"]})

    async def card(self, request: web.Request) -> web.Response:
        body = await request.json()
        customer = self._by_card.get(str(body.get("card", "")) if isinstance(body, dict) else "")
        if customer is None:
            raise web.HTTPNotFound(text='{"error": "unknown card"}', content_type="application/json")
        return web.json_response({"customer": self._public(customer)})

    async def set_delay(self, request: web.Request) -> web.Response:
        body = await request.json()
        seconds = float(body.get("seconds", 0))
        if body.get("operation"):
            self.delays[str(body["operation"])] = seconds
        else:
            self.delay = seconds
        return web.json_response({"delay": seconds})

    async def reset(self, _request: web.Request) -> web.Response:
        self.failures.clear()
        self.stats.clear()
        self.delays.clear()
        self.delay = 0.0
        return web.json_response({"ok": True})

    async def get_stats(self, _request: web.Request) -> web.Response:
        return web.json_response({"requests": dict(self.stats), "locked": sorted(
            a for a, n in self.failures.items() if n >= MAX_PIN_FAILURES)})


async def start(host: str = "127.0.0.1", port: int = 0,
                service: DirectoryService | None = None) -> tuple[web.AppRunner, str, DirectoryService]:
    """Serve the directory; returns the runner (``await runner.cleanup()`` to stop) and its base URL."""
    service = service or DirectoryService()
    runner = web.AppRunner(service.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    sockets = site._server.sockets if site._server is not None else []  # type: ignore[attr-defined]
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, f"http://{host}:{bound}", service
