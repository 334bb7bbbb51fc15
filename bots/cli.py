"""The `retouch-bot` command: one entry point for the bots, the local API server and batch work."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import ConfigError, StoreError
from core.settings import Settings, load_settings

if TYPE_CHECKING:
    from bots.discord.settings import DiscordSettings
    from bots.runtime import BotRunner
    from bots.telegram.settings import TelegramSettings

BOT_COMMANDS = ("run", "telegram", "discord", "doctor")
"""The commands that read the chat platforms' settings too."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retouch-bot",
        description="Retouch portrait photos from Telegram, Discord or the command line.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    retouch = commands.add_parser(
        "retouch",
        help="retouch photo files or folders of photos",
        description="Retouch photos through the same core path the bots use.",
    )
    retouch.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="files or folders")
    retouch.add_argument(
        "-o",
        "--output",
        help="the result file for one input (.jpg, .png or .webp: its format), else a folder;"
        " default: beside each input, as NAME-retouched",
    )
    retouch.add_argument(
        "-f", "--fidelity", help="0..1 (lower is a stronger retouch); default from settings"
    )
    retouch.add_argument("--backend", choices=["auto", "api", "local"], help="override backend")
    retouch.add_argument(
        "-j", "--jobs", type=int, help="photos at once (default 4; the local engine: its threads)"
    )
    retouch.add_argument(
        "-r", "--recursive", action="store_true", help="also the photos in sub-folders"
    )
    retouch.add_argument(
        "--force", action="store_true", help="retouch earlier results (*-retouched.*) too"
    )
    retouch.add_argument(
        "-q", "--quality", type=int, help="JPEG and WebP quality when re-encoding, 1-100 (95)"
    )
    retouch.add_argument(
        "--keep-date",
        action="store_true",
        help="copy the photo's capture date (EXIF DateTimeOriginal, nothing else) to the result",
    )

    serve = commands.add_parser(
        "serve-api",
        help="serve the local engine as an OpenAI-compatible retouch API",
        description="Serve POST /v1/chat/completions like the hosted retouch API.",
    )
    serve.add_argument("--host", help="address to listen on (default SERVE_API_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (default SERVE_API_PORT)")

    demo = commands.add_parser(
        "demo",
        help="retouch the sample portrait offline and write a before/after image",
        description="Retouch a portrait with the embedded engine; no token or key needed.",
    )
    demo.add_argument(
        "input", nargs="?", type=Path, help="a portrait (default: the sample shipped with it)"
    )
    demo.add_argument("--out-dir", type=Path, default=Path("demo-output"))
    demo.add_argument("-f", "--fidelity", default="0.1", help="0..1 (default 0.1)")
    commands.add_parser(
        "run",
        help="run every configured bot (Telegram and/or Discord) in one process",
        description="Run the bots whose tokens are set, sharing one service, until SIGTERM.",
    )
    commands.add_parser(
        "telegram",
        help="run the Telegram bot (long polling) with TELEGRAM_BOT_TOKEN",
        description="Run the Telegram bot until SIGINT or SIGTERM.",
    )
    commands.add_parser(
        "discord",
        help="run the Discord bot (gateway) with DISCORD_BOT_TOKEN",
        description="Run the Discord bot until SIGINT or SIGTERM.",
    )

    commands.add_parser(
        "doctor",
        help="check the configuration, database, upstream and bot tokens",
        description="One line per check with a verdict and the fix; exit 1 if any failed.",
    )

    quota = commands.add_parser("quota", help="show or grant a user's quota")
    quota_commands = quota.add_subparsers(dest="quota_command", required=True, metavar="ACTION")
    show = quota_commands.add_parser("show", help="used, left, credits and reset time today")
    show.add_argument("user", metavar="USER", help="telegram:123 or discord:456")
    grant = quota_commands.add_parser("grant", help="add extra credits (negative takes back)")
    grant.add_argument("user", metavar="USER", help="telegram:123 or discord:456")
    grant.add_argument("credits", type=int, metavar="N")

    db = commands.add_parser(
        "db",
        help="create or upgrade the store, or move one store into another",
        description="The store is SQLite (DATABASE_PATH) or PostgreSQL (DATABASE_URL).",
    )
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_commands.add_parser(
        "migrate", help="create or upgrade the configured store's schema and print its version"
    )
    export = db_commands.add_parser(
        "export", help="write quotas, grants, settings and unfinished jobs to FILE (JSON lines)"
    )
    export.add_argument("file", metavar="FILE", help="where to write; - for stdout")
    export.add_argument(
        "--from-sqlite",
        type=Path,
        metavar="PATH",
        help="export this SQLite file instead of the configured store",
    )
    db_import = db_commands.add_parser(
        "import", help="add an export to the configured store (once; a second time is refused)"
    )
    db_import.add_argument("file", metavar="FILE", help="an export; - for stdin")

    payments = commands.add_parser("payments", help="refund a Telegram Stars purchase")
    payment_commands = payments.add_subparsers(
        dest="payments_command", required=True, metavar="ACTION"
    )
    refund = payment_commands.add_parser(
        "refund", help="pay a purchase back in Stars and take its credits back (unless spent)"
    )
    refund.add_argument("charge_id", metavar="CHARGE_ID", help="its telegram_payment_charge_id")

    jobs = commands.add_parser("jobs", help="recent jobs and their states")
    jobs.add_argument("-n", "--limit", type=int, default=20, help="how many (default 20)")
    jobs.add_argument("--user", help="only this user (telegram:123)")
    return parser


def _version() -> str:
    """The installed package's version (pyproject.toml's)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("retouch-bot")
    except PackageNotFoundError:
        return "(not installed as a package)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code (2 for bad input or configuration)."""
    args = build_parser().parse_args(argv)
    try:
        settings = _settings_for(args)
        return asyncio.run(_dispatch(args, settings))
    except ConfigError as exc:
        print(f"retouch-bot: configuration error: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:  # the bots' start-up: the operator commands say it themselves
        from bots.store_access import failure_line

        print(f"retouch-bot: {failure_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _settings_for(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if getattr(args, "backend", None):
        overrides["retouch_backend"] = args.backend
    if args.command == "demo":
        overrides["retouch_backend"] = "local"
    return load_settings(**overrides)


async def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    from core.logs import setup_logging

    if args.command == "serve-api":
        return await _serve_api(args, settings)
    if args.command in BOT_COMMANDS:
        return await _dispatch_bots(args.command, settings)
    if args.command == "payments":
        from bots.payments_admin import run_refund

        return await run_refund(settings, args.charge_id)
    setup_logging(settings)
    if args.command == "retouch":
        from bots.batch import BatchOptions, run_batch

        options = BatchOptions(
            args.inputs,
            args.output,
            args.fidelity,
            args.jobs,
            recursive=args.recursive,
            force=args.force,
            quality=args.quality,
            keep_date=args.keep_date,
        )
        return await run_batch(settings, options)
    if args.command == "demo":
        from bots.demo import run_demo

        return await run_demo(settings, args.input, args.out_dir, args.fidelity)
    if args.command == "quota":
        from bots.admin import quota_grant, quota_show

        if args.quota_command == "show":
            return await quota_show(settings, args.user)
        return await quota_grant(settings, args.user, args.credits)
    if args.command == "db":
        from bots.db import db_export, db_import, db_migrate

        if args.db_command == "migrate":
            return await db_migrate(settings)
        if args.db_command == "export":
            return await db_export(settings, args.file, args.from_sqlite)
        return await db_import(settings, args.file)
    if args.command == "jobs":
        from bots.admin import list_jobs

        return await list_jobs(settings, args.limit, args.user)
    raise AssertionError(args.command)


async def _serve_api(args: argparse.Namespace, settings: Settings) -> int:
    from bots.serve_api import ServeApiSettings, run_server
    from core.logs import setup_logging

    serve = ServeApiSettings.load()
    setup_logging(settings, serve)

    def ready(url: str) -> None:
        print(f"serving the local retouch engine at {url}/v1 (Ctrl-C to stop)", flush=True)

    await run_server(settings, serve, host=args.host, port=args.port, ready=ready)
    return 0


async def _dispatch_bots(command: str, settings: Settings) -> int:
    """The commands that run or check the bots: the platforms' settings are read (and their
    secrets redacted in the logs) besides the core's."""
    from bots.discord.settings import DiscordSettings
    from bots.telegram.settings import TelegramSettings
    from core.logs import setup_logging

    telegram, discord = TelegramSettings.load(), DiscordSettings.load()
    setup_logging(settings, telegram, discord)
    if command == "doctor":
        from bots.doctor import run_doctor

        return await run_doctor(settings, telegram, discord)
    if command == "telegram":
        from bots.telegram.run import run_telegram

        await run_telegram(settings, telegram)
        return 0
    if command == "discord":
        from bots.discord.run import run_discord

        await run_discord(settings, discord)
        return 0
    from bots.runtime import serve

    runners = _configured_runners(settings, telegram, discord)
    if not runners:
        from bots.enabled import NO_BOT

        print(f"retouch-bot: {NO_BOT}", file=sys.stderr)
        return 2
    await serve(settings, runners)
    return 0


def _configured_runners(
    settings: Settings, telegram: TelegramSettings, discord: DiscordSettings
) -> list[BotRunner]:
    """A runner for each bot whose token is set."""
    from bots.enabled import enabled_bots

    enabled = enabled_bots(telegram, discord)
    runners: list[BotRunner] = []
    if "telegram" in enabled:
        from bots.telegram.run import TelegramRunner

        runners.append(TelegramRunner(settings, telegram))
    if "discord" in enabled:
        from bots.discord.run import DiscordRunner

        runners.append(DiscordRunner(settings, discord))
    return runners


if __name__ == "__main__":
    sys.exit(main())
