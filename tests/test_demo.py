"""`crmstream demo` end to end: it comes up, numbers grow, the API serves them, Ctrl-C stops everything."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import shutil
import urllib.request
from pathlib import Path

from streams.embedded import free_port
from tests.stack import wait_until


ADMIN_KEY = "demo-admin-" + "d" * 24


def fetch_json(url: str, key: str | None = ADMIN_KEY) -> dict:
    request = urllib.request.Request(url, headers={"X-API-Key": key} if key else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def test_demo_shows_live_numbers_and_dashboard_and_stops_cleanly_on_ctrl_c(tmp_path, output_dir):
    api_port = free_port()
    env = {**os.environ, "CRM_API_PORT": str(api_port), "CRM_DATA_DIR": str(tmp_path),
           "CRM_KAFKA_BOOTSTRAP": "", "CRM_REDIS_URL": "", "CRM_API_KEYS": f"{ADMIN_KEY}:admin"}
    demo = subprocess.Popen([sys.executable, "-m", "streams.cli", "demo", "--customers", "300", "--days", "200",
                             "--rate", "1000"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    lines: list[str] = []
    try:
        started = time.monotonic()
        accepted_seen: list[int] = []
        # Until the churn trainer's process is up, the worker waits for the model version of its event time
        # (agents/churn_versions.py): the numbers may hold for a few status lines at the start, then move.
        while time.monotonic() - started < 120 and (len(accepted_seen) < 2 or accepted_seen[-1] == accepted_seen[0]):
            line = demo.stdout.readline()
            if not line:
                break
            lines.append(line)
            match = re.search(r"accepted\s+([\d,]+)/", line)
            if match and int(match.group(1).replace(",", "")) > 0:
                accepted_seen.append(int(match.group(1).replace(",", "")))
        assert len(accepted_seen) >= 2, "".join(lines)
        assert accepted_seen[-1] > accepted_seen[0], "live numbers do not move"

        overview = fetch_json(f"http://127.0.0.1:{api_port}/overview")
        assert overview["customers"] > 0 and overview["accepted"]["interactions"] > 0
        assert fetch_json(f"http://127.0.0.1:{api_port}/health", key=None) == {"status": "ok"}
        check_dashboard(f"http://127.0.0.1:{api_port}", output_dir / "dashboard.png")
        ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", "".join(lines))]
    finally:
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
        lines.append(rest)
    assert demo.returncode == 0, "".join(lines)
    assert "stopped." in lines[-1]
    for port in ports:  # broker, redis and API are all gone
        wait_until(lambda: not _listening(port), 10, f"port {port} still open after shutdown")


def check_dashboard(url: str, screenshot: Path) -> None:
    """Headless Chromium (Debian's) loads the dashboard: the charts draw live numbers, and they move."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                             args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{url}/#key={ADMIN_KEY}")
            page.wait_for_function("+(document.querySelector('[data-testid=accepted]')?.dataset.value || '')"
                                   ".replace(/\\D/g, '') > 0", timeout=60_000)
            page.wait_for_function("[...document.querySelectorAll('#risk rect')].some(r => +r.dataset.value > 0)",
                                   timeout=60_000)
            page.wait_for_function("document.querySelectorAll('#trend polyline').length === 2", timeout=30_000)
            first = _accepted(page)
            page.wait_for_function("+document.querySelector('[data-testid=accepted]').dataset.value"
                                   f".replace(/\\D/g, '') > {first}", timeout=30_000)
            assert _accepted(page) > first, "the dashboard's numbers do not move"
            assert "live" in page.text_content("[data-testid=status]"), page.text_content("[data-testid=status]")
            assert page.locator("#risk rect").count() == 10
            assert re.fullmatch(r"v\d+( \(held\))?|prior", page.text_content("[data-testid=churn-model]"))
            assert page.url.endswith("/"), "the key must leave the address bar"
            page.screenshot(path=str(screenshot), full_page=True)
            assert errors == []
        finally:
            browser.close()


def _accepted(page) -> int:
    return int(re.sub(r"\D", "", page.get_attribute("[data-testid=accepted]", "data-value")))


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
