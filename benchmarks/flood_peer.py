"""The flood benchmark's peer: a plain python-telegram-bot bot, `python -m benchmarks.flood_peer`.

What a competent developer writes first, with the library's own tools and nothing of ours:
concurrent updates, PTB's `AIORateLimiter` (30 a second in all, 20 a minute per group, a few
retries after a 429), one httpx client to the upstream and no store. For each photo (in a private
chat, or captioned `/retouch` in a group) it shows "sending a photo…" (a chat action), downloads
the photo, calls the upstream's chat-completions contract, downloads the result and replies with
it; a failure is answered with one apology.

Configured by the environment, like our bot: TELEGRAM_BOT_TOKEN, TELEGRAM_API_BASE_URL,
TELEGRAM_FILE_BASE_URL, RETOUCH_API_BASE_URL and RETOUCH_API_KEY.
"""

from __future__ import annotations

import base64
import logging
import os

import httpx
from telegram import Update
from telegram.constants import ChatAction
from telegram.ext import AIORateLimiter, Application, ContextTypes, MessageHandler, filters

log = logging.getLogger("flood_peer")

MAX_RETRIES = 3
"""AIORateLimiter's retries after a 429 (its default, 0, would drop the reply at the first)."""
PROMPT = "Retouch this portrait naturally."

ADDRESSED = filters.PHOTO & (filters.ChatType.PRIVATE | filters.CaptionRegex(r"^/retouch(@\w+)?"))
"""Every photo in a private chat; in a group, a photo whose caption is the /retouch command."""


class Peer:
    """The photo handler, with the one httpx client it shares across updates."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.endpoint = f"{base_url.rstrip('/')}/chat/completions"
        self.client = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(120.0, connect=10.0),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )

    async def retouch(self, image: bytes) -> bytes:
        """The upstream's answer is a URL to the retouched image: fetch it."""
        data_url = "data:image/jpeg;base64," + base64.b64encode(image).decode()
        body = {
            "model": "retouch",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": PROMPT},
                        {"type": "image_url", "image_url": {"url": data_url}},
                    ],
                }
            ],
        }
        answer = await self.client.post(self.endpoint, json=body)
        answer.raise_for_status()
        url = answer.json()["choices"][0]["message"]["content"].strip()
        result = await self.client.get(url)
        result.raise_for_status()
        return result.content

    async def close(self, application: Application) -> None:  # type: ignore[type-arg]
        await self.client.aclose()

    async def on_photo(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or not message.photo:
            return
        try:
            await message.reply_chat_action(ChatAction.UPLOAD_PHOTO)
            file = await message.photo[-1].get_file()
            image = await file.download_as_bytearray()
            result = await self.retouch(bytes(image))
            await message.reply_photo(result)
        except Exception:
            log.exception("retouching failed")
            await message.reply_text("Sorry, that did not work. Please try again.")


def build(peer: Peer) -> Application:  # type: ignore[type-arg]
    """The application: concurrent updates, AIORateLimiter, the Bot API server from the env."""
    application = (
        Application.builder()
        .token(os.environ["TELEGRAM_BOT_TOKEN"])
        .base_url(os.environ.get("TELEGRAM_API_BASE_URL", "https://api.telegram.org/bot"))
        .base_file_url(
            os.environ.get("TELEGRAM_FILE_BASE_URL", "https://api.telegram.org/file/bot")
        )
        .concurrent_updates(True)
        .rate_limiter(AIORateLimiter(max_retries=MAX_RETRIES))
        .post_shutdown(peer.close)
        .build()
    )
    application.add_handler(MessageHandler(ADDRESSED, peer.on_photo))
    return application


def main() -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "WARNING"))
    peer = Peer(os.environ["RETOUCH_API_BASE_URL"], os.environ.get("RETOUCH_API_KEY", ""))
    build(peer).run_polling(allowed_updates=[Update.MESSAGE], close_loop=False)


if __name__ == "__main__":
    main()
