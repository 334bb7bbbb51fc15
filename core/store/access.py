"""What the store's feature mixins (`ChatRows`, `PurchaseRows`) need of `SqlStore`: its reads,
writes and transactions, typed once here so the mixins can live beside their SQL."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, Protocol, TypeVar

from core.store.dialect import Dialect, Row, Tx

T = TypeVar("T")
Clock = Callable[[], float]
Work = Callable[[Tx], Coroutine[Any, Any, T]]
"""What runs in a transaction: an async function of the transaction."""


class SqlAccess(Protocol):
    """The part of `SqlStore` a mixin's methods use (as the type of their `self`)."""

    dialect: ClassVar[Dialect]
    _clock: Clock

    async def _fetch(self, sql: str, *params: Any) -> list[Row]: ...

    async def _fetchrow(self, sql: str, *params: Any) -> Row | None: ...

    async def _write(self, sql: str, *params: Any) -> list[Row]: ...

    async def _transaction(self, work: Work[T]) -> T: ...
