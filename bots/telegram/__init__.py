"""The Telegram adapter: python-telegram-bot handlers over `core.service.RetouchService`."""
