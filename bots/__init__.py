"""Chat adapters (Telegram, Discord) and the command-line entry point; thin layers over `core`."""
