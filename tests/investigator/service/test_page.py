"""The live page in a real browser (Debian's Chromium, driven by Playwright): sign in,
submit through the API, watch the row go to `done`, open the report."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.investigator.service.conftest import MAIN, Server, auth, incident_body

REQUIRE_BROWSER = os.environ.get("FORENSICS_REQUIRE_BROWSER") == "1"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _chromium() -> str:
    for candidate in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        found = shutil.which(candidate)
        if found:
            return found
    message = "no headless browser: install Debian's `chromium` package (apt-get install -y chromium)"
    if REQUIRE_BROWSER:
        pytest.fail(f"FORENSICS_REQUIRE_BROWSER=1 but {message}")
    pytest.skip(message)


@pytest.fixture
def browser() -> Iterator[Any]:
    executable = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if REQUIRE_BROWSER:
            pytest.fail("FORENSICS_REQUIRE_BROWSER=1 but Playwright is not installed (pip install -e '.[dev]')")
        pytest.skip("Playwright is not installed")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, args=FLAGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


def test_the_page_follows_an_investigation_to_its_report(
    browser: Any, server: Server, organism_incidents: dict[str, Path]
) -> None:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    page.goto(server.url + "/")
    assert page.url.endswith("/login")  # no session yet
    page.fill("#token", "wrong-token-000000")
    page.click("#sign-in")
    assert page.inner_text("#error") == "unknown token"
    errors.clear()  # the browser logs the refused sign-in (401) as a console error
    page.fill("#token", MAIN)
    page.click("#sign-in")
    page.wait_for_url(server.url + "/")
    page.wait_for_selector("#counts b")

    job = httpx.post(
        f"{server.url}/v1/incidents",
        json=incident_body(organism_incidents["oversight-subversion"]),
        headers=auth(),
        timeout=60,
    ).json()
    row = f'tr[data-id="{job["id"]}"]'
    page.wait_for_selector(row, timeout=30_000)  # it appears without a reload
    page.wait_for_selector(f'{row}[data-state="done"]', timeout=240_000)
    assert page.inner_text(f"{row} td.state") == "done"
    verdict = page.inner_text(f"{row} td.verdict")
    assert verdict.split()[0] in {"misalignment", "mistake", "inconclusive"}
    assert page.inner_text(f"{row} td.incident") == "oversight-subversion"

    page.click(f"{row} a.report-link")
    page.wait_for_load_state()
    assert f"/v1/incidents/{job['id']}/report" in page.url
    assert "oversight-subversion" in page.inner_text("body")
    assert verdict.split()[0] in page.inner_text("body").lower()
    assert not errors, errors
