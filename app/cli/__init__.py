"""The `python -m app` (and `telltale`) command line."""

from app.cli.commands import main

__all__ = ["main"]
