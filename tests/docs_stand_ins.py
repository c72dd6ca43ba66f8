"""Stand-ins for the outside world that the documentation's examples talk to.

The examples in README.md and docs/ import these from hidden setup blocks (see
tests/project/test_docs_examples.py): a payment gateway, an HTTP fetch, a database query. Each one
behaves like the real thing in the way the example needs (answers, fails, takes time) and
sleeps on the running loop's clock, so the examples run in virtual time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import anyio

logger = logging.getLogger("docs.example")
url = "https://example.org/orders"
key = "user:42"
order_id = "o-42"


@dataclass
class Receipt:
    order_id: str
    amount: int = 0


@dataclass
class Item:
    id: int
    price: float | None = None


@dataclass
class Page:
    user_id: str
    recommendations: list[Item] = field(default_factory=list)


@dataclass
class Response:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Url:
    host: str


@dataclass
class Request:
    tenant_id: str = "acme"
    url: Url = field(default_factory=lambda: Url("api.example.org"))


class Gateway:
    """A payment gateway that answers after 20 ms, or fails the first `failures` calls."""

    def __init__(self, failures: int = 0) -> None:
        self.calls = 0
        self.failures = failures

    async def charge(self, order_id: str, amount: int = 0) -> Receipt:
        self.calls += 1
        await anyio.sleep(0.02)
        if self.calls <= self.failures:
            raise ConnectionResetError("connection reset by peer")
        return Receipt(order_id, amount)


gateway = Gateway()


class Flaky:
    """An async callable that fails with ConnectionError `failures` times, then answers."""

    def __init__(self, failures: int, answer: Any = b"ok") -> None:
        self.calls = 0
        self.failures = failures
        self.answer = answer

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        await anyio.sleep(0.01)
        if self.calls <= self.failures:
            raise ConnectionError(f"attempt {self.calls} failed")
        return self.answer


async def fetch_once(url: str = url) -> bytes:
    await anyio.sleep(0.01)
    return b"<html>...</html>"


async def fetch(*args: Any) -> bytes:
    await anyio.sleep(0.01)
    return b"ok"


async def run_query(order_id: Any) -> dict[str, Any]:
    await anyio.sleep(0.005)
    return {"id": order_id}


class PartnerClient:
    def __init__(self) -> None:
        self.posted: list[Any] = []

    async def post(self, payload: Any) -> None:
        await anyio.sleep(0.01)
        self.posted.append(payload)


partner_client = PartnerClient()


async def forward(request: Request) -> Response:
    await anyio.sleep(0.01)
    return Response()


async def queue_for_later(exc: BaseException, order_id: str, amount: int = 0) -> Receipt:
    return Receipt(order_id, amount)


async def from_cache(exc: BaseException, *args: Any) -> list[Any]:
    return []


async def fetch_quote(symbol: str) -> float:
    await anyio.sleep(0.03)
    return 1.08


async def render_main_content(user_id: str) -> Page:
    await anyio.sleep(0.01)
    return Page(user_id)


class RecommendationService:
    async def fetch(self, user_id: str) -> list[Item]:
        await anyio.sleep(0.05)
        return [Item(1), Item(2)]


recs_service = RecommendationService()


async def enrich_with_prices(items: list[Item]) -> None:
    for item in items:
        item.price = 9.99


async def reserve_stock(order_id: Any) -> None:
    await anyio.sleep(0.01)


async def charge(order_id: Any, amount: int = 0) -> Receipt:
    return await gateway.charge(str(order_id), amount)


async def load(key: str) -> bytes:
    await anyio.sleep(0.01)
    raise LookupError(key)


async def process(item: Item) -> None:
    await anyio.sleep(0.01)


items = [Item(n) for n in range(3)]
