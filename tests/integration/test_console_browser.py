"""The web console (`/console/`) driven in headless Chromium, as an operator uses it.

A real ippbx (`PbxHarness`, loopback ports) with sipp phones; Chromium (Debian `chromium`
+ `chromium-driver`) through Selenium. The PBX runs in the test's event loop, so every
Selenium call (blocking) runs in a thread (`Browser.run`/`Browser.wait`) while the loop
keeps serving the page. Every wait is bounded. Nothing here is skipped: without Chromium,
chromedriver or sipp the tests fail (`make debs` installs them).

Screenshots land in `artifacts/` under the repository root (ignored by git).
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pbx_harness import API_PASSWORD, PbxHarness, Start, TrunkSpec, ext_password, phone
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait
from sipp_harness import Sipp, SippFactory, SippResult, sipp_available

from ippbx.media.recordings import recording_name
from ippbx.pbx.cdr import CdrRecord

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# headless, and no traffic to Google's hosts (updates, sync, field trials, QUIC probes)
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-quic",
                  "--window-size=1280,900")

T = TypeVar("T")


# -- the browser ----------------------------------------------------------------------------
@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[WebDriver]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    assert not missing, (f"not installed: {', '.join(missing)} (Debian packages chromium "
                         "and chromium-driver: `make debs`)")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # (`page_errors`)
    service = Service(executable_path=str(CHROMEDRIVER),
                      log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def phones(tmp_path: Path) -> Iterator[SippFactory]:
    """sipp runs, as the `sipp` fixture makes them, but failing (not skipping) without sipp."""
    assert sipp_available(), "sipp not installed (Debian package sip-tester: `make debs`)"
    factory = SippFactory(tmp_path / "sipp")
    try:
        yield factory
    finally:
        factory.close()


class Browser:
    """The console in Chromium; every blocking Selenium call runs in a worker thread."""

    def __init__(self, driver: WebDriver, base: str) -> None:
        self.driver = driver
        self.base = base

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    async def wait(self, condition: Callable[[WebDriver], T], what: str,
                   timeout: float = 5.0) -> T:
        """`condition(driver)` until it is truthy (stale elements count as not yet)."""
        def until() -> T:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.02,
                                 ignored_exceptions=(StaleElementReferenceException,)) \
                .until(condition, f"timed out after {timeout} s waiting for {what}")
        return await self.run(until)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def finds(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def shown(self, css: str) -> bool:
        found = self.finds(css)
        return bool(found) and found[0].is_displayed()

    def text(self, css: str) -> str:
        found = self.finds(css)
        return found[0].text if found else ""

    async def open(self, path: str = "/console/") -> None:
        await self.run(self.driver.get, self.base + path)

    async def leave(self) -> None:
        """Away from the console (its event stream closes)."""
        await self.run(self.driver.get, "about:blank")

    async def click(self, css: str) -> None:
        await self.run(lambda: self.find(css).click())

    async def type(self, css: str, text: str) -> None:
        def typing() -> None:
            field = self.find(css)
            field.clear()
            field.send_keys(text)
        await self.run(typing)

    async def script(self, source: str, *args: Any) -> Any:
        return await self.run(self.driver.execute_script, source, *args)

    async def fetch_status(self, method: str, path: str, headers: dict[str, str]) -> int:
        """The HTTP status the page's own session gets for a request made from the page."""
        return await self.run(self.driver.execute_async_script, """
            const [method, path, headers, done] = arguments;
            fetch(path, {method, headers, credentials: 'same-origin',
                         body: method === 'GET' ? undefined : '{}'})
              .then((r) => done(r.status), (e) => done(String(e)));
        """, method, path, headers)

    async def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        assert await self.run(self.driver.save_screenshot, str(path)), path
        return path

    async def page_errors(self) -> list[str]:
        """What the page logged as errors since the last look: script errors, CSP
        violations (an inline style or script the policy refused). Failed requests are
        left out: the tests make some (401, 403, 404) on purpose."""
        entries = await self.run(self.driver.get_log, "browser")
        return [e["message"] for e in entries if e["level"] == "SEVERE"
                and "Failed to load resource" not in e["message"]]

    async def login(self, user: str, password: str) -> None:
        await self.type("#login-user", user)
        await self.type("#login-password", password + Keys.ENTER)  # the keyboard submits

    async def signed_in(self) -> None:
        """Signed in, the console shown, the event stream up with its first snapshot."""
        await self.wait(lambda d: self.shown("#console-view")
                        and self.find("#live-state").get_attribute("data-state") == "open",
                        "the console with its live event stream")
        assert not self.shown("#login-view")

    async def tab(self, name: str) -> None:
        await self.click(f"#tab-{name}")
        await self.wait(lambda d: self.shown(f"#panel-{name}"), f"the {name} tab")


async def console_for(pbx: PbxHarness, driver: WebDriver) -> Browser:
    """The console of `pbx` open at its login form."""
    browser = Browser(driver, f"http://127.0.0.1:{pbx.app.api.port}")
    await browser.open("/")  # `/` leads to the console
    await browser.wait(lambda d: browser.shown("#login-form"), "the login form")
    assert browser.driver.current_url == browser.base + "/console/"
    assert await browser.run(lambda: browser.driver.title) == "ippbx console"
    return browser


def caller(sipp: SippFactory, pbx: PbxHarness, scenario: str, dialled: str,
           **kwargs: Any) -> Sipp:
    """Extension 1001 (sipp, digest auth) calling `dialled`."""
    kwargs.setdefault("recv_timeout_ms", 15000)
    kwargs.setdefault("sipp_timeout_s", 30)
    return sipp(scenario, remote=pbx.sip_address, service=dialled, calls=1,
                auth=("1001", ext_password("1001")), keys={"user": "1001"}, **kwargs)


def received(result: SippResult, first_line: str) -> int:
    return sum(1 for m in result.messages()
               if m.direction == "received" and m.first_line.startswith(first_line))


def row_cells(row: WebElement) -> dict[str, str]:
    return {name: row.find_element(By.CSS_SELECTOR, f"td.{name}").text
            for name in ("caller", "callee", "trunk", "status", "duration")}


# -- the acceptance test ----------------------------------------------------------------------
async def test_live_call_appears_and_is_hung_up_from_the_console(
    start_pbx: Start, phones: SippFactory, chromium: WebDriver
) -> None:
    """Log in (a wrong password first), watch extension 1001 call 1002: the row comes by
    the SSE push within a second of the call reaching the PBX, its duration ticks; a
    refused transfer leaves it up, Hold and Unhold re-INVITE 1002; Hang up sends both
    phones a BYE and the row leaves. Then: POSTs without the CSRF token are refused,
    logout goes back to the login form and ends the session."""
    pbx = await start_pbx([])
    browser = await console_for(pbx, chromium)

    # a wrong password: the error is shown, the console is not
    await browser.login("api", "not-the-password")
    await browser.wait(lambda d: "wrong user name or password" in browser.text("#login-error"),
                       "the login error")
    assert not browser.shown("#console-view")
    assert await browser.fetch_status("GET", "/console/api/me", {}) == 401

    await browser.login("api", API_PASSWORD)
    await browser.signed_in()
    assert browser.text("#session-user") == "api"
    assert browser.text("#calls-summary") == "No live calls."
    assert browser.finds("#calls-body tr") == []
    await browser.script("window.sameDocument = true;")  # gone if the page ever reloads

    # 1002 registers: the Registrations tab shows it, pushed (reached by the keyboard)
    callee = await phone(phones, pbx, "1002", "ctl_uas_hold_unhold.xml", trace_msg=True,
                         sipp_timeout_s=30)
    await browser.click("#tab-calls")
    await browser.run(lambda: browser.find("#tab-calls").send_keys(Keys.ARROW_RIGHT))
    await browser.wait(lambda d: browser.shown("#panel-registrations")
                       and d.switch_to.active_element.get_attribute("id") == "tab-registrations",
                       "the Registrations tab chosen with the arrow key")
    await browser.wait(
        lambda d: browser.text('#ext-reg-body tr[data-number="1002"] td.state') == "Registered",
        "1002 shown registered")
    assert browser.text('#ext-reg-body tr[data-number="1003"] td.state') == "Unregistered"
    await browser.run(lambda: browser.find("#tab-registrations").send_keys(Keys.ARROW_LEFT))
    await browser.wait(lambda d: browser.shown("#panel-calls"), "back on Live calls")

    # 1001 calls 1002, which answers and stays up until it gets a BYE
    def row_shown(d: WebDriver) -> tuple[WebElement, float] | None:
        rows = browser.finds("#calls-body tr[data-callid]")
        return (rows[0], time.monotonic()) if rows and rows[0].is_displayed() else None

    began: list[float] = []  # when the PBX first had the call (its first event)

    def on_event(event: object) -> None:
        if not began and len(pbx.app.registry):
            began.append(time.monotonic())

    unsubscribe = pbx.app.registry.subscribe(on_event)
    appeared = asyncio.ensure_future(browser.wait(row_shown, "the call's row", timeout=15))
    try:
        near = await caller(phones, pbx, "pbx_uac_auth_recv_bye.xml", "1002",
                            trace_msg=True).astart()
        row, seen = await appeared
    finally:  # (also when the call could not start: no wait left behind)
        appeared.cancel()
        unsubscribe()
    [started] = began
    assert seen - started < 1.0, f"the row came {seen - started:.2f} s after the call"
    [call] = pbx.app.registry.calls()
    callid = row.get_attribute("data-callid")
    assert callid == call.callid
    # pushed over the event stream: the page never reloaded, never asked for the calls
    assert await browser.script("return window.sameDocument === true")
    fetched = await browser.script(
        "return performance.getEntriesByType('resource').map((e) => e.name)")
    assert not [url for url in fetched if "/console/api/calls" in url], fetched

    selector = f'#calls-body tr[data-callid="{callid}"]'
    await browser.wait(lambda d: browser.text(f"{selector} td.status") == "Talking",
                       "the call talking")
    cells = await browser.run(row_cells, browser.find(selector))
    assert (cells["caller"], cells["callee"], cells["status"]) == ("1001", "1002", "Talking")
    assert cells["trunk"].split() == ["—", "none"]  # no trunk: a dash, "none" when read out
    assert browser.text("#calls-count") == "1"
    assert "1 live call." in browser.text("#calls-summary")
    # the duration ticks by itself, once a second
    first = cells["duration"]
    await browser.wait(lambda d: browser.text(f"{selector} td.duration") not in ("", first),
                       "the duration to tick", timeout=3)
    # the buttons a user sees for a talking call
    buttons = await browser.run(lambda: {
        b.get_attribute("data-action"): (b.is_displayed(), b.is_enabled())
        for b in browser.finds(f"{selector} button[data-action]")})
    assert buttons["hangup"] == (True, True) and buttons["hold"] == (True, True)
    assert buttons["transfer"] == (True, True) and buttons["unhold"][0] is False
    await browser.screenshot("console-live-call.png")

    # Transfer asks for the number in the row; 1003 is not registered: refused, call kept
    transfer = f'{selector} button[data-action="transfer"]'
    await browser.click(transfer)
    await browser.wait(lambda d: browser.shown(f"{selector} .transfer-form")
                       and "transfer-number" in (d.switch_to.active_element.get_attribute("id")
                                                 or ""), "the transfer form, focused")
    assert browser.find(transfer).get_attribute("aria-expanded") == "true"
    await browser.run(lambda: browser.driver.switch_to.active_element.send_keys(Keys.ENTER))
    await browser.wait(lambda d: browser.text(f"{selector} .transfer-error")
                       == "Enter the number to transfer to.", "the empty number refused")
    await browser.run(lambda: browser.driver.switch_to.active_element.send_keys("1003\n"))
    await browser.wait(lambda d: browser.text("#calls-error").startswith(
        "Could not transfer the call 1001 → 1002: refused"), "the refused transfer")
    await browser.run(lambda: browser.driver.switch_to.active_element.send_keys(Keys.ESCAPE))
    await browser.wait(lambda d: not browser.shown(f"{selector} .transfer-form")
                       and d.switch_to.active_element.get_attribute("data-action") == "transfer",
                       "Escape closes the form, back on its button")
    assert browser.text(f"{selector} td.status") == "Talking" and near.running

    # Hold (1002 gets a re-INVITE a=sendonly), then Unhold from the keyboard (a=sendrecv)
    await browser.click(f'{selector} button[data-action="hold"]')
    await browser.wait(lambda d: browser.text(f"{selector} td.status") == "Wait"
                       and d.switch_to.active_element.get_attribute("data-action") == "unhold",
                       "the call held, the focus on Unhold")
    assert not browser.shown(f'{selector} button[data-action="hold"]')
    await browser.run(lambda: browser.driver.switch_to.active_element.send_keys(Keys.ENTER))
    await browser.wait(lambda d: browser.text(f"{selector} td.status") == "Talking"
                       and d.switch_to.active_element.get_attribute("data-action") == "hold",
                       "the call resumed, the focus on Hold")
    assert browser.text("#calls-error") == ""

    # Hang up: both phones get a BYE, the row leaves
    await browser.click(f'{selector} button[data-action="hangup"]')
    near_result = (await near.await_result(10)).assert_ok(calls=1)
    callee_result = (await callee.await_result(10)).assert_ok(calls=1)
    assert received(near_result, "BYE ") == 1 and received(callee_result, "BYE ") == 1
    assert received(callee_result, "INVITE ") == 3  # the call, hold, unhold
    await browser.wait(lambda d: not browser.finds(selector), "the row to leave")
    assert "ended" in browser.text("#calls-summary")
    await browser.wait(lambda d: browser.text("#calls-count") == "0", "no live call counted")
    assert browser.text("#calls-error") == ""
    await pbx.wait_idle()
    [cdr] = pbx.app.store.cdrs()
    assert (cdr.callid, cdr.status, cdr.hangup_by) == (callid, "ANSWERED", "api")
    await browser.screenshot("console-hung-up.png")

    # POSTs without the session's CSRF token are refused; with it, the action runs
    no_call = "/console/api/calls/0.0/hangup"
    json_type = {"Content-Type": "application/json"}
    assert await browser.fetch_status("POST", no_call, json_type) == 403
    assert await browser.fetch_status("POST", no_call, {**json_type,
                                                        "X-CSRF-Token": "forged"}) == 403
    assert await browser.fetch_status("POST", "/console/logout", json_type) == 403
    token = await browser.run(browser.driver.execute_async_script, """
        const done = arguments[0];
        fetch('/console/api/me').then((r) => r.json()).then((me) => done(me.csrf));
    """)
    assert await browser.fetch_status("POST", no_call, {**json_type,
                                                        "X-CSRF-Token": token}) == 404

    # logout: back to the login form, the session is over (also after a reload)
    await browser.click("#logout")
    await browser.wait(lambda d: browser.shown("#login-form"), "the login form again")
    assert not browser.shown("#console-view") and not browser.shown("#logout")
    assert browser.text("#login-notice") == "You have signed out."
    assert await browser.fetch_status("GET", "/console/api/me", {}) == 401
    await browser.open()
    await browser.wait(lambda d: browser.shown("#login-form"), "the login form after a reload")
    assert not browser.shown("#console-view")

    assert await browser.page_errors() == []
    await browser.leave()
    await pbx.stop()


# -- call history and the hourly chart ----------------------------------------------------------
def silent_wav(seconds: float = 1.0, rate: int = 8000) -> bytes:
    """A mono 16-bit PCM WAV of silence."""
    data = b"\0\0" * int(rate * seconds)
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
            + b"data" + struct.pack("<I", len(data)) + data)


def old_record(n: int, start: float, recording: str = "") -> CdrRecord:
    """A finished call 1003 → 1004 an hour before `start` (calls the page pages through)."""
    return CdrRecord(callid=f"{int(start) - 3600}.{n}", start=start - 3600 - n,
                     answer=None, end=start - 3600 - n + 5, callfrom="1003", callto="1004",
                     duration=5, talk=0, status="NO ANSWER", type="Internal",
                     caller_ext="1003", callee_ext="1004", recording=recording)


async def test_call_history_search_paging_recording_and_hourly_chart(
    start_pbx: Start, phones: SippFactory, chromium: WebDriver, tmp_path: Path
) -> None:
    """After a real call 1001 → 1002 (and twelve older ones put in the store, the newest of
    them recorded): Call history lists it first, a player for the recorded one; pages of
    ten; the search narrows the list to it. The chart has 24 bars, the current hour's
    counting the calls made."""
    pbx = await start_pbx([], media={"engine": "none"})  # (a recordings directory)
    callee = await phone(phones, pbx, "1002", "uas.xml")
    near = await caller(phones, pbx, "uac_auth.xml", "1002", duration_ms=300).astart()
    (await near.await_result(15)).assert_ok(calls=1)
    (await callee.await_result(15)).assert_ok(calls=1)
    await pbx.wait_idle()
    [real] = pbx.app.store.cdrs()
    recorded = old_record(0, real.start)
    name = recording_name("1003", "1004", recorded.start, recorded.callid)  # (the recorder's)
    for n in range(12):
        pbx.app.store.add_cdr(old_record(n, real.start, name if n == 0 else ""))
    recordings = pbx.app.media.recordings.directory
    recordings.mkdir(parents=True, exist_ok=True)
    (recordings / name).write_bytes(silent_wav())

    browser = await console_for(pbx, chromium)
    await browser.login("api", API_PASSWORD)
    await browser.signed_in()
    await browser.tab("history")
    await browser.wait(lambda d: browser.text("#cdr-summary") == "13 calls found.",
                       "the call history")
    await browser.run(lambda: Select(browser.find("#cdr-per-page")).select_by_value("10"))
    await browser.wait(lambda d: browser.text("#cdr-page") == "Page 1 of 2"
                       and len(browser.finds("#cdr-body tr")) == 10, "ten calls a page")
    newest = browser.find("#cdr-body tr")
    assert newest.get_attribute("data-cdrid") == real.callid
    assert [newest.find_element(By.CSS_SELECTOR, f"td.{c}").text
            for c in ("caller", "callee", "status")] == ["1001", "1002", "ANSWERED"]
    assert not browser.find("#cdr-next").get_attribute("disabled")
    assert browser.find("#cdr-prev").get_attribute("disabled") is not None

    # the recording plays in the page's player: its length is known once loaded
    audio = f'#cdr-body tr[data-cdrid="{recorded.callid}"] audio'
    assert browser.find(audio).get_attribute("controls") is not None
    await browser.script("const a = document.querySelector(arguments[0]);"
                         "a.preload = 'metadata'; a.load();", audio)
    await browser.wait(lambda d: d.execute_script(
        "const a = document.querySelector(arguments[0]);"
        "return a.readyState >= 1 && Math.abs(a.duration - 1) < 0.05;", audio),
        "the recording's player to load it")
    assert len(browser.finds("#cdr-body audio")) == 1  # the others were not recorded

    await browser.click("#cdr-next")
    await browser.wait(lambda d: browser.text("#cdr-page") == "Page 2 of 2"
                       and len(browser.finds("#cdr-body tr")) == 3, "the second page")
    assert browser.find("#cdr-next").get_attribute("disabled") is not None

    await browser.type("#cdr-q", "1001" + Keys.ENTER)
    await browser.wait(lambda d: browser.text("#cdr-summary") == "1 call found.",
                       "the search narrowed to the real call")
    [row] = browser.finds("#cdr-body tr")
    assert row.get_attribute("data-cdrid") == real.callid
    assert browser.text("#cdr-page") == "Page 1 of 1"
    await browser.type("#cdr-q", "5550199" + Keys.ENTER)
    await browser.wait(lambda d: browser.text("#cdr-summary") == "No calls found."
                       and not browser.finds("#cdr-body tr[data-cdrid]"), "nothing found")
    assert browser.text("#cdr-body td.empty") == "No calls."

    # the chart: 24 bars; the real call's hour shows one answered call at least
    await browser.tab("chart")
    await browser.wait(lambda d: len(browser.finds("#hourly-chart rect.bar")) == 24,
                       "24 bars")
    bars = await browser.run(lambda: [
        {name: float(b.get_attribute(name) or 0)
         for name in ("data-start", "data-calls", "data-answered", "height")}
        for b in browser.finds("#hourly-chart rect.bar")])
    assert sum(bar["data-calls"] for bar in bars) == 13
    [hour] = [bar for bar in bars if bar["data-start"] == int(real.start) // 3600 * 3600]
    assert hour["data-calls"] >= 1 and hour["data-answered"] == 1
    assert [bar["height"] > 0 for bar in bars] == [bar["data-calls"] > 0 for bar in bars]
    description = browser.text("#hourly-chart-desc") or await browser.script(
        "return document.getElementById('hourly-chart-desc').textContent")
    assert description.startswith("13 calls in the last 24 hours")
    await browser.screenshot("console-history-chart.png")

    assert await browser.page_errors() == []
    await browser.leave()
    await pbx.stop()


# -- configuration ------------------------------------------------------------------------------
READONLY = '[[api.users]]\nusername = "watcher"\npassword = "watchpass"\nrole = "readonly"\n'


async def extension(pbx: PbxHarness, number: str) -> dict[str, Any] | None:
    answer = (await pbx.post("extension/query", {"extid": number})).json()
    assert answer["status"] == "Success", answer
    return answer["extinfos"][0] if answer["extinfos"] else None


async def test_configuration_forms_add_edit_delete_and_show_the_errno(
    start_pbx: Start, chromium: WebDriver, fresh_port: int
) -> None:
    """Configuration tab: the four lists; add extension 1006 (a duplicate shows the
    vendor's errno and its meaning), edit it (untouched fields kept), delete it after
    the inline confirmation; an outbound route naming a missing trunk is refused, then
    added. A readonly user sees the lists without the buttons that change them."""
    pbx = await start_pbx([TrunkSpec("carrier", fresh_port)], extra=READONLY)
    browser = await console_for(pbx, chromium)
    await browser.login("api", API_PASSWORD)
    await browser.signed_in()
    await browser.tab("config")
    for kind, key in (("extension", "1001"), ("trunk", "carrier"), ("outroute", "external"),
                      ("inroute", "did")):
        await browser.wait(lambda d, k=kind, n=key: browser.finds(
            f'#cfg-{k}-body tr[data-key="{n}"]'), f"{kind} {key} listed")
    assert len(browser.finds("#cfg-extension-body tr")) == 5

    # add 1006: the form opens with the focus in its first field
    await browser.click("#cfg-extension-add")
    await browser.wait(lambda d: browser.shown("#cfg-extension-form")
                       and d.switch_to.active_element.get_attribute("id")
                       == "cfg-extension-number", "the new extension's form")
    assert browser.text("#cfg-extension-legend") == "New extension"
    await browser.type("#cfg-extension-number", "1006")
    await browser.type("#cfg-extension-username", "Dana")
    await browser.type("#cfg-extension-registerpassword", "Sip#1006x")
    await browser.click('label[for="cfg-extension-hasvoicemail"]')  # the label ticks it
    await browser.click("#cfg-extension-save")
    row = '#cfg-extension-body tr[data-key="1006"]'
    await browser.wait(lambda d: browser.finds(row), "1006 listed")
    assert browser.text("#cfg-extension-status") == "Added extension 1006."
    assert not browser.shown("#cfg-extension-form")
    assert browser.text(f"{row} td:nth-child(2)") == "Dana"
    assert browser.text(f"{row} td:nth-child(4)") == "on"
    added = await extension(pbx, "1006")
    assert added is not None
    assert (added["username"], added["registerpassword"], added["hasvoicemail"]) == \
        ("Dana", "Sip#1006x", "on")

    # a duplicate: refused, the errno and what it means shown in the form
    await browser.click("#cfg-extension-add")
    await browser.type("#cfg-extension-number", "1001" + Keys.ENTER)
    await browser.wait(lambda d: "errno 10017" in browser.text("#cfg-extension-form-error"),
                       "the refusal")
    assert "already taken" in browser.text("#cfg-extension-form-error")
    assert browser.shown("#cfg-extension-form")
    await browser.run(lambda: browser.find("#cfg-extension-number").send_keys(Keys.ESCAPE))
    await browser.wait(lambda d: not browser.shown("#cfg-extension-form"), "Escape closes it")

    # edit: the form starts from the extension; only the changed name is sent
    await browser.click(f'{row} button[data-do="edit"]')
    await browser.wait(lambda d: browser.text("#cfg-extension-legend")
                       == "Edit extension 1006", "the edit form")
    assert browser.find("#cfg-extension-username").get_attribute("value") == "Dana"
    assert browser.find("#cfg-extension-hasvoicemail").is_selected()
    await browser.type("#cfg-extension-username", "Dana Scully")
    await browser.click("#cfg-extension-save")
    await browser.wait(lambda d: browser.text(f"{row} td:nth-child(2)") == "Dana Scully",
                       "the new name listed")
    assert browser.text("#cfg-extension-status") == "Saved extension 1006."
    edited = await extension(pbx, "1006")
    assert edited is not None
    assert (edited["username"], edited["registerpassword"]) == ("Dana Scully", "Sip#1006x")

    # delete, after the inline confirmation (Keep first: nothing happens)
    await browser.click(f'{row} button[data-do="delete"]')
    await browser.wait(lambda d: "Delete extension 1006?" in browser.text(f"{row} .confirm"),
                       "the confirmation")
    await browser.click(f'{row} button[data-do="keep"]')
    await browser.wait(lambda d: browser.finds(f'{row} button[data-do="delete"]'),
                       "the row's buttons back")
    assert await extension(pbx, "1006") is not None
    await browser.click(f'{row} button[data-do="delete"]')
    await browser.click(f'{row} button[data-do="confirm-delete"]')
    await browser.wait(lambda d: not browser.finds(row), "1006 gone")
    assert browser.text("#cfg-extension-status") == "Deleted extension 1006."
    assert await extension(pbx, "1006") is None

    # an outbound route naming a trunk that does not exist, then the right one
    await browser.click("#cfg-outroute-add")
    await browser.type("#cfg-outroute-name", "intl")
    await browser.type("#cfg-outroute-prefix", "00")
    await browser.type("#cfg-outroute-matchpattern", "X.")
    await browser.type("#cfg-outroute-trunks", "nosuch")
    await browser.click("#cfg-outroute-save")
    await browser.wait(lambda d: "errno 10017" in browser.text("#cfg-outroute-form-error"),
                       "the refused route")
    await browser.type("#cfg-outroute-trunks", "carrier")
    await browser.click("#cfg-outroute-save")
    route = '#cfg-outroute-body tr[data-key="intl"]'
    await browser.wait(lambda d: browser.finds(route), "the route listed")
    assert [c.text for c in browser.finds(f"{route} td")][:5] == \
        ["00", "X.", "—\nnone", "carrier", "—\nnone"]
    assert (await pbx.post("outroute/query", {"name": "intl"})).json()["outroutes"][0][
        "trunks"] == "carrier"
    await browser.screenshot("console-configuration.png")

    # a readonly user: the lists, no buttons to change them, none to act on calls
    await browser.click("#logout")
    await browser.wait(lambda d: browser.shown("#login-form"), "the login form")
    await browser.login("watcher", "watchpass")
    await browser.signed_in()
    assert browser.text("#session-role") == "read only"
    await browser.tab("config")
    await browser.wait(lambda d: browser.finds(route), "the lists")
    assert not browser.shown("#cfg-extension-add")
    assert not [b for b in browser.finds("#config-sections tbody button") if b.is_displayed()]

    assert await browser.page_errors() == []
    await browser.leave()
    await pbx.stop()
