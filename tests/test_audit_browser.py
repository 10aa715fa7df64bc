"""
``report.html`` in a real browser: headless Chromium renders an audit's report, the screenshot is not blank, and the
page loads no external resource. Every request the browser makes goes to a local recording proxy; the hosts asked
for while rendering the report, beyond those asked for while rendering a blank page (the browser's own traffic), must
be none, and a page with one external image proves the proxy sees such a load.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("single_thread")

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(f"no headless browser installed (looked for {', '.join(BROWSERS)}; Debian: apt-get install chromium)")


class _RecordingProxy:
    """A loopback HTTP proxy that records the host of every request (CONNECT or absolute URL) and answers 404."""

    def __init__(self) -> None:
        self.hosts: list[str] = []
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    line = conn.recv(4096).decode("latin-1").split("\r\n", 1)[0]
                except OSError:
                    continue
                parts = line.split()
                if len(parts) >= 2:
                    target = parts[1]
                    host = target.split("//", 1)[-1].split("/", 1)[0] if "//" in target else target
                    self.hosts.append(host.rsplit(":", 1)[0])
                try:
                    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self.server.close()


def _render(browser, page, tmp_path, name):
    """Screenshot `page` with headless Chromium through a recording proxy: ``(png path, hosts requested)``."""
    proxy = _RecordingProxy()
    shot = tmp_path / f"{name}.png"
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        f"--user-data-dir={tmp_path / ('profile_' + name)}",
        f"--proxy-server=http://127.0.0.1:{proxy.port}",
        "--proxy-bypass-list=<-loopback>",
        "--window-size=1000,1400",
        "--virtual-time-budget=3000",
        f"--screenshot={shot}",
        page.as_uri(),
    ]
    try:
        subprocess.run(cmd, capture_output=True, timeout=90, check=False)
    finally:
        proxy.close()
    return shot, set(proxy.hosts)


def test_report_html_renders_in_chromium_with_no_external_resource(digits_mlp_classifier, digits, tmp_path):
    from PIL import Image

    from art_ext.evaluations import audit

    browser = _browser()
    _, (x_test, y_test), _, _ = digits
    audit(
        digits_mlp_classifier,
        x_test[:40],
        y_test[:40],
        sections=["clean", "robustness", "certification"],
        robustness_attacks=("fgsm", "pgd"),
        section_options={"robustness": {"n": 20, "steps": 3}},
        out_dir=str(tmp_path / "report"),
        formats=("html",),
        verbose=False,
    )
    page = tmp_path / "report" / "report.html"
    html = page.read_text()
    assert "http://" not in html and "https://" not in html and 'src="//' not in html

    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    _, browser_noise = _render(browser, blank, tmp_path, "blank")
    external = tmp_path / "external.html"
    external.write_text('<!DOCTYPE html><html><body><img src="http://external.invalid/pixel.png"></body></html>')
    _, seen = _render(browser, external, tmp_path, "external")
    assert "external.invalid" in seen, f"the recording proxy missed an external image ({seen})"

    shot, hosts = _render(browser, page, tmp_path, "report")
    assert not hosts - browser_noise, f"report.html loaded external resources from {sorted(hosts - browser_noise)}"
    assert shot.exists(), "Chromium wrote no screenshot"
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 900
    # Not blank: text, tables and figures give many dark pixels and a wide spread.
    assert (pixels < 128).mean() > 0.01 and pixels.std() > 20, ((pixels < 128).mean(), pixels.std())
