"""A page in a real browser: headless Chromium (Debian's `chromium`, which `make test`
installs where it is missing), driven over the DevTools protocol on 127.0.0.1 with aiohttp's
websocket client. It loads a page, collects what the console said (errors, exceptions, the
browser's own complaints such as a blocked fetch), evaluates JavaScript in it, and takes a
screenshot of the whole page."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Loaded:
    problems: list[str] = field(default_factory=list)  # console errors, exceptions, logs
    values: Any = None  # what `evaluate` returned
    screenshot: bytes = b""


def load(page: Path, evaluate: str, *, width: int = 1100) -> Loaded:
    return asyncio.run(_load(page, evaluate, width))


async def _load(page: Path, evaluate: str, width: int) -> Loaded:
    assert CHROMIUM, "chromium is not installed: `make test` installs it (apt-get install chromium)"
    # Its helper processes may still write to the profile as it ends: leave what they add.
    with tempfile.TemporaryDirectory(
        prefix="hf-run-job-chromium-", ignore_cleanup_errors=True
    ) as profile:
        browser = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",  # tests run as root in containers
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            endpoint = await asyncio.wait_for(asyncio.to_thread(_devtools_url, browser), 30)
            async with aiohttp.ClientSession() as http:
                port = re.search(r":(\d+)/", endpoint)[1]  # type: ignore[index]
                targets = await (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
                target = next(t for t in targets if t["type"] == "page")
                async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                    return await asyncio.wait_for(_drive(ws, page, evaluate, width), 60)
        finally:
            browser.terminate()  # it ends its helper processes too
            try:
                browser.wait(timeout=10)
            except subprocess.TimeoutExpired:
                browser.kill()
                browser.wait()


def _devtools_url(browser: subprocess.Popen[str]) -> str:
    assert browser.stderr is not None
    for line in browser.stderr:
        if line.startswith("DevTools listening on "):
            return line.split(" on ", 1)[1].strip()
    raise AssertionError("chromium ended without opening its DevTools port")


async def _drive(ws: Any, page: Path, evaluate: str, width: int) -> Loaded:
    loaded = Loaded()
    ids = itertools.count(1)
    waiting: dict[int, asyncio.Future[Any]] = {}
    load_fired = asyncio.Event()

    async def reader() -> None:
        async for message in ws:
            data = json.loads(message.data)
            if "id" in data and data["id"] in waiting:
                waiting.pop(data["id"]).set_result(data)
            method, params = data.get("method"), data.get("params", {})
            if method == "Page.loadEventFired":
                load_fired.set()
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "warning"):
                said = " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
                loaded.problems.append(f"console.{params['type']}: {said}")
            elif method == "Runtime.exceptionThrown":
                loaded.problems.append(f"exception: {params['exceptionDetails'].get('text')}")
            elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
                loaded.problems.append(f"log: {params['entry']['text']}")

    async def call(method: str, **params: Any) -> Any:
        number = next(ids)
        waiting[number] = asyncio.get_running_loop().create_future()
        await ws.send_str(json.dumps({"id": number, "method": method, "params": params}))
        answer = await waiting[number]
        assert "error" not in answer, answer
        return answer.get("result")

    listening = asyncio.create_task(reader())
    try:
        for domain in ("Page", "Runtime", "Log"):
            await call(f"{domain}.enable")
        await call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=900,
            deviceScaleFactor=1,
            mobile=False,
        )
        await call("Page.navigate", url=page.resolve().as_uri())
        await load_fired.wait()
        await asyncio.sleep(0.3)  # late console messages
        result = await call("Runtime.evaluate", expression=evaluate, returnByValue=True)
        loaded.values = result["result"].get("value")
        shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        loaded.screenshot = base64.b64decode(shot["data"])
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
    return loaded
