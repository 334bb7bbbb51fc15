"""The Telegram adapter: python-telegram-bot handlers over `core.service.RetouchService`."""

import os

# Opt in to PTB's future `RetryAfter.retry_after` as a timedelta (our flood handling takes both).
os.environ.setdefault("PTB_TIMEDELTA", "1")
