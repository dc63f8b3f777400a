"""Fixtures of the CLI tests (helpers live in cli_helpers.py)."""

from __future__ import annotations
