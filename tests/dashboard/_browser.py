"""Headless system Chromium driven over the DevTools protocol (no browser download)."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

from tests._servers import spawn

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--remote-debugging-port=0",
)


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("Chromium is not installed: apt-get install -y chromium (see .ci/run)")


class Browser:
    """One headless Chromium with one page; collects console errors and CSP violations."""

    def __init__(self) -> None:
        self._profile = tempfile.mkdtemp(prefix="hc-chromium-")
        # A file, not a pipe: Chromium's chatter must never fill a pipe nobody drains.
        self._log = Path(self._profile) / "chromium.log"
        self._process = spawn(
            "Chromium",
            [
                chromium_path(),
                *CHROMIUM_FLAGS,
                f"--user-data-dir={self._profile}/profile",
                "about:blank",
            ],
            self._log,
        )
        self._stack = contextlib.ExitStack()
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        self.problems: list[str] = []
        try:
            self._ws: ClientConnection = self._stack.enter_context(
                connect(self._devtools_url(), max_size=64 * 1024 * 1024)
            )
            self._attach()
        except BaseException:
            self.close()
            raise

    def _attach(self) -> None:
        target = self._call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self._call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")

    def _devtools_url(self) -> str:
        self._process.wait_until(self._process.mentions(b"DevTools listening on"), interval=0.05)
        match = re.search(r"DevTools listening on (ws://\S+)", self._process.log_text())
        assert match is not None
        return match.group(1)

    def _call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self._ws.send(json.dumps(message))
        while True:
            reply = json.loads(self._ws.recv(timeout=30))
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))
            self._note(reply)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        return self._call(method, self._session, **params)

    def _note(self, event: dict[str, Any]) -> None:
        method = event.get("method")
        params = event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.problems.append("console: " + json.dumps(params.get("args")))
        elif method == "Runtime.exceptionThrown":
            self.problems.append("exception: " + json.dumps(params.get("exceptionDetails")))
        elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
            entry = params["entry"]
            self.problems.append(f"{entry.get('source')}: {entry.get('text')} ({entry.get('url')})")
        self._events.append(event)

    def _wait_for(self, method: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = json.loads(self._ws.recv(timeout=max(deadline - time.monotonic(), 0.1)))
            self._note(event)
            if event.get("method") == method:
                return
        raise TimeoutError(method)

    def open(self, url: str) -> None:
        self._events.clear()
        self.call("Page.navigate", url=url)
        self._wait_for("Page.loadEventFired")
        self.settle()

    def settle(self, seconds: float = 0.3) -> None:
        """Read the events that arrive shortly after a load (late CSP reports)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self._note(json.loads(self._ws.recv(timeout=deadline - time.monotonic())))
            except TimeoutError:
                return

    def submit(self, form_selector: str, fields: dict[str, str]) -> None:
        """Fill in a form and submit it as a user would (the page itself has no script)."""
        script = "".join(
            f"document.querySelector({json.dumps(sel)}).value = {json.dumps(v)};"
            for sel, v in fields.items()
        )
        self.evaluate(script + f"document.querySelector({json.dumps(form_selector)}).submit()")
        self._wait_for("Page.loadEventFired")
        self.settle()

    def take_problems(self) -> list[str]:
        taken, self.problems = self.problems, []
        return taken

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(json.dumps(result["exceptionDetails"]))
        return result["result"].get("value")

    def url(self) -> str:
        return str(self.evaluate("location.href"))

    def cookies(self) -> list[dict[str, Any]]:
        return list(self.call("Network.getCookies")["cookies"])

    def screenshot(self, path: Path, width: int, height: int, mobile: bool = False) -> None:
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=mobile,
        )
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(data["data"]))
        self.call("Emulation.clearDeviceMetricsOverride")

    def close(self) -> None:
        try:
            self._stack.close()
        finally:
            self._process.stop(timeout=10)
            shutil.rmtree(self._profile, ignore_errors=True)
