"""Telegram webhook mode: an aiohttp endpoint that checks the secret token on every request.

Any number of replicas can serve one bot behind a load balancer: each stores the updates it is
given in the shared inbox before it answers 200 (`bots.telegram.updates`), so a re-sent one is
handled once whichever replica gets it; they share only the store.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from telegram import Update
from telegram.ext import Application

from bots.ops import split_listen
from bots.telegram.settings import TelegramSettings
from bots.telegram.updates import InboxDispatcher

log = logging.getLogger("retouch.telegram")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
MAX_UPDATE_BYTES = 1_000_000
DISPATCHER = web.AppKey("dispatcher", InboxDispatcher)
SECRET = web.AppKey("secret", str)


async def receive(request: web.Request) -> web.Response:
    """Store one update, then answer 200 (Telegram re-sends it otherwise); 403 unless the
    secret token matches (constant-time)."""
    given = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), request.app[SECRET].encode()):
        log.warning("webhook call without the right secret token from %s", request.remote)
        raise web.HTTPForbidden(text="forbidden")
    try:
        data = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
        raise web.HTTPBadRequest(text="not an update")
    await request.app[DISPATCHER].receive(data)
    return web.Response(text="ok")


async def start_webhook(
    app: Application[Any, Any, Any, Any, Any, Any],
    dispatcher: InboxDispatcher,
    telegram: TelegramSettings,
) -> web.AppRunner:
    """Listen on `TELEGRAM_WEBHOOK_LISTEN` at the URL's path, then tell Telegram the URL."""
    server = web.Application(client_max_size=MAX_UPDATE_BYTES)
    server[DISPATCHER] = dispatcher
    server[SECRET] = telegram.secret_token
    path = urlsplit(telegram.webhook_url).path or "/"
    server.router.add_post(path, receive)
    runner = web.AppRunner(server, access_log=None)
    await runner.setup()
    host, port = split_listen(telegram.webhook_listen)
    await web.TCPSite(runner, host, port).start()
    await app.bot.set_webhook(
        telegram.webhook_url,
        secret_token=telegram.secret_token,
        allowed_updates=Update.ALL_TYPES,
        max_connections=100,
    )
    log.info("webhook listening on %s:%d%s", host, port, path)
    return runner
