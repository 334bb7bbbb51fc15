"""The Discord bot (discord.py 2): slash and context-menu commands over the shared core."""
