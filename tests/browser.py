"""Real headless Chromium (Debian's chromium + chromium-driver) driven by Selenium.

Selenium blocks, and the servers under test run on the test's event loop, so every browser
call goes through a worker thread.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


class Browser:
    def __init__(self) -> None:
        chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
        if not chromium or not driver:
            pytest.fail("chromium and chromium-driver are missing: run bin/setup-host")
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    "--window-size=1280,900"):
            options.add_argument(arg)
        options.accept_insecure_certs = True  # the lab's self-signed certificate
        self.driver = webdriver.Chrome(service=Service(driver), options=options)

    async def get(self, url: str) -> None:
        await asyncio.to_thread(self.driver.get, url)

    async def run(self, script: str, *args: Any) -> Any:
        return await asyncio.to_thread(self.driver.execute_script, script, *args)

    async def text(self, css: str) -> str:
        def read() -> str:
            return "\n".join(e.text for e in self.driver.find_elements(By.CSS_SELECTOR, css))

        return await asyncio.to_thread(read)

    async def wait_for(self, script: str, timeout: float, what: str) -> Any:
        """Poll a JS expression until truthy (a generous bound, not a performance assertion)."""
        for _ in range(int(timeout / 0.05)):
            value = await self.run("return " + script)
            if value:
                return value
            await asyncio.sleep(0.05)
        raise AssertionError(f"page never showed {what}; body: {await self.text('body')}")

    async def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self.driver.save_screenshot, str(path))

    def close(self) -> None:
        self.driver.quit()
