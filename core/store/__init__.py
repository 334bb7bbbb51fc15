"""The job and quota store: one interface (`JobStore`), on SQLite or PostgreSQL.

    from core.store import JobStore, open_store, Usage

The stores themselves are `core.store.sqlite.SqliteStore` and `core.store.postgres.PostgresStore`;
`open_store` picks the one the settings name.
"""

from core.errors import (
    AlreadyImportedError,
    AlreadyRefundedError,
    ChatQuotaExceededError,
    CreditsSpentError,
    PurchaseNotFoundError,
    QuotaExceededError,
    StoreError,
)
from core.store.dump import DUMP_TABLES
from core.store.factory import describe_store, open_store
from core.store.protocol import (
    CHAT_SETTING_TYPES,
    TRANSITION_FIELDS,
    ChatSettings,
    JobStore,
    Purchase,
    PurchaseTotals,
    Stats,
    StoreDump,
    Usage,
    UserSettings,
)

__all__ = [
    "CHAT_SETTING_TYPES",
    "DUMP_TABLES",
    "TRANSITION_FIELDS",
    "AlreadyImportedError",
    "AlreadyRefundedError",
    "ChatQuotaExceededError",
    "ChatSettings",
    "CreditsSpentError",
    "JobStore",
    "Purchase",
    "PurchaseNotFoundError",
    "PurchaseTotals",
    "QuotaExceededError",
    "Stats",
    "StoreDump",
    "StoreError",
    "Usage",
    "UserSettings",
    "describe_store",
    "open_store",
]
