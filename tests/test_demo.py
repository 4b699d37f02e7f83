"""`crmstream demo` end to end: it comes up, numbers grow, the API serves them, Ctrl-C stops everything."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

from streams.embedded import free_port
from tests.stack import wait_until


def fetch_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_demo_shows_live_numbers_and_stops_cleanly_on_ctrl_c(tmp_path):
    api_port = free_port()
    env = {**os.environ, "CRM_API_PORT": str(api_port), "CRM_DATA_DIR": str(tmp_path),
           "CRM_KAFKA_BOOTSTRAP": "", "CRM_REDIS_URL": ""}
    demo = subprocess.Popen([sys.executable, "-m", "streams.cli", "demo", "--customers", "300", "--days", "200",
                             "--rate", "1000"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    lines: list[str] = []
    try:
        started = time.monotonic()
        accepted_seen: list[int] = []
        while time.monotonic() - started < 120 and len(accepted_seen) < 2:
            line = demo.stdout.readline()
            if not line:
                break
            lines.append(line)
            match = re.search(r"accepted\s+([\d,]+)/", line)
            if match and int(match.group(1).replace(",", "")) > 0:
                accepted_seen.append(int(match.group(1).replace(",", "")))
        assert len(accepted_seen) == 2, "".join(lines)
        assert accepted_seen[1] > accepted_seen[0], "live numbers do not move"

        overview = fetch_json(f"http://127.0.0.1:{api_port}/overview")
        assert overview["customers"] > 0 and overview["accepted"]["interactions"] > 0
        assert fetch_json(f"http://127.0.0.1:{api_port}/health") == {"status": "ok"}
        ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", "".join(lines))]
    finally:
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
        lines.append(rest)
    assert demo.returncode == 0, "".join(lines)
    assert "stopped." in lines[-1]
    for port in ports:  # broker, redis and API are all gone
        wait_until(lambda: not _listening(port), 10, f"port {port} still open after shutdown")


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
