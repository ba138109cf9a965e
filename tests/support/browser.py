"""Debian's Chromium driven by Playwright: the one way every browser test starts its browser (none is downloaded)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
ARGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)
"""Headless, in a container without a sandbox or GPU, and quiet: no first-run pages, no calls home."""


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A running browser, closed on the way out. A machine without Chromium fails the test (never skips it) with
    the command that installs it: `make test` installs it."""
    if not await asyncio.to_thread(CHROMIUM.exists):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=list(ARGS))
        try:
            yield browser
        finally:
            await browser.close()
