"""The shared async core of retouch-bot: no chat library is imported anywhere in this package."""
