"""Browser tests: Playwright for Python driving Debian's Chromium (no browser download).

They run whenever a Chromium is found (`LEDGER_TEST_CHROMIUM`, else `chromium` on the PATH);
pytest's header says which, and each is skipped with the reason when there is none. Each test
gets a fresh user-data directory; screenshots go to .data/artifacts/browser/ (not committed).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".data" / "artifacts" / "browser"
# Flags for a headless Chromium on a machine with no internet and no sandbox support.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# How long one step may wait for the page (the whole flow takes a few seconds).
STEP_TIMEOUT_MS = 10_000


def chromium_path() -> str | None:
    given = os.environ.get("LEDGER_TEST_CHROMIUM")
    if given:
        return given if Path(given).exists() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def axe_script() -> Path:
    """axe-core's script as the axe-playwright-python package ships it (from the lock file)."""
    spec = importlib.util.find_spec("axe_playwright_python")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent / "axe.min.js"


def pytest_report_header() -> str:
    found = chromium_path()
    if found:
        return f"browser tests: Chromium at {found}"
    return "browser tests: skipped, no Chromium found (apt-get install -y chromium)"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if chromium_path():
        return
    skip = pytest.mark.skip(reason="no Chromium found (apt-get install -y chromium)")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
async def chromium() -> AsyncIterator[Any]:
    """A fresh Chromium profile; pages may have axe injected (CSP bypassed for that only)."""
    from playwright.async_api import async_playwright

    executable = chromium_path()
    assert executable is not None
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ledger-chromium-") as profile:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                profile,
                executable_path=executable,
                args=CHROMIUM_ARGS,
                headless=True,
                viewport={"width": 1280, "height": 900},
                bypass_csp=True,
            )
            context.set_default_timeout(STEP_TIMEOUT_MS)
            try:
                yield context
            finally:
                await context.close()
