"""voicemail/query, voicemail/delete, voicemail/get_random and voicemail/download over real
HTTP, JSON and XML, both dialects: messages left in real mailboxes (a SQLite file and a
directory of WAVs), dates in the PBX's time zone, the WAV once per random, the errnos."""

from __future__ import annotations

import json
import re
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from ippbx.config import parse_config
from ippbx.pbx.mailboxes import Mailboxes, Message
from ippbx.store.sqlite import Store

if TYPE_CHECKING:
    from conftest import ApiHarness, FakeClock

pytestmark = pytest.mark.asyncio(loop_scope="session")

VERSIONS = ["v0.0.1", "v1.1.0"]
DECL = b'<?xml version="1.0" encoding="UTF-8" ?>\n'
OK_XML = DECL + b"<xml>\n    <status>Success</status>\n"
SUCCESS = {"status": "Success"}
FAILED = {"status": "Failed"}
MARCH_1 = 1709278812.0  # 2024-03-01 07:40:12 UTC, 08:40:12 in Berlin

CONFIG = """
[pbx]
timezone = "Europe/Berlin"
[api]
password = "apipass"
[[extensions]]
number = "1001"
password = "secret1001"
voicemail = true
[[extensions]]
number = "1002"
password = "secret1002"
voicemail = true
[[extensions]]
number = "1003"
password = "secret1003"
"""


def write_wav(path: Path, level: int) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(level.to_bytes(2, "little", signed=True) * 800)
    return path


@pytest.fixture
def boxes(api: ApiHarness, clock: FakeClock, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Mailboxes]:
    """Mailboxes on a SQLite file of the test's own, behind the API (serving CONFIG)."""
    api.reset(parse_config(CONFIG), clock)
    store = Store(tmp_path / "ippbx.sqlite3")
    made = Mailboxes(tmp_path / "voicemail", store)
    monkeypatch.setattr(api.ctx, "mailboxes", made)
    yield made
    store.close()


def leave(boxes: Mailboxes, mailbox: str, caller: str, seconds: int, at: float) -> Message:
    """A message as the call flow leaves it: a WAV recorded elsewhere, moved in."""
    boxes.clock = lambda: at
    recorded = write_wav(boxes.directory.parent / f"rec-{at}.wav", int(at) % 3000)
    message = boxes.deposit(mailbox, caller, recorded, seconds)
    assert message is not None
    return message


def three_messages(boxes: Mailboxes) -> None:
    leave(boxes, "1002", "95550006666", 17, MARCH_1)
    leave(boxes, "1001", "1002", 5, MARCH_1 + 3600)
    leave(boxes, "1001", "1003", 42, MARCH_1 + 7200.5)


async def call(api: ApiHarness, version: str, endpoint: str, body: Any = None,
               fmt: str | None = None, token: str | None = None) -> bytes:
    token = token or await api.login(version)
    url = f"/api/{version}/{endpoint}?token={token}" + (f"&type={fmt}" if fmt else "")
    content = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    response = await api.post(url, content=content)
    assert response.status_code == 200
    return response.content


async def call_json(api: ApiHarness, version: str, endpoint: str, body: Any = None,
                    token: str | None = None) -> Any:
    return json.loads(await call(api, version, endpoint, body, token=token))


async def download(api: ApiHarness, token: str, random: str, version: str = "v0.0.1",
                   **extra: str) -> httpx.Response:
    params = {"token": token, "random": random, **extra}
    return await api.client.get(f"/api/{version}/voicemail/download", params=params)


# -- voicemail/query --------------------------------------------------------------------------
MAILBOX_1001 = {"extid": "1001", "voicemail": [
    {"voicemailfile": "msg0000.wav", "messagefrom": "1002",
     "voicemaildate": "2024-03-01 09:40:12", "voicemaillength": "5"},
    {"voicemailfile": "msg0001.wav", "messagefrom": "1003",
     "voicemaildate": "2024-03-01 10:40:12", "voicemaillength": "42"},
]}
MAILBOX_1002 = {"extid": "1002", "voicemail": [
    {"voicemailfile": "msg0000.wav", "messagefrom": "95550006666",
     "voicemaildate": "2024-03-01 08:40:12", "voicemaillength": "17"},
]}


@pytest.mark.parametrize("version", VERSIONS)
async def test_query_lists_the_mailboxes_that_have_messages(
    api: ApiHarness, boxes: Mailboxes, version: str
) -> None:
    three_messages(boxes)
    token = await api.login(version)

    async def query(body: Any) -> Any:
        return await call_json(api, version, "voicemail/query", body, token)

    everything = {**SUCCESS, "voicemails": [MAILBOX_1001, MAILBOX_1002]}
    for body in (None, {}, {"extid": ""}, {"extid": "all"}):
        assert await query(body) == everything
    assert list((await query(None))["voicemails"][0]["voicemail"][0]) == [
        "voicemailfile", "messagefrom", "voicemaildate", "voicemaillength"]
    assert await query({"extid": "1002"}) == {**SUCCESS, "voicemails": [MAILBOX_1002]}
    assert await query(b'{"extid": 1002}') == {**SUCCESS, "voicemails": [MAILBOX_1002]}
    assert await query({"extid": "1002, 9999,1001,1003,1002"}) == {
        **SUCCESS, "voicemails": [MAILBOX_1002, MAILBOX_1001]}
    # an extension without messages, or no extension at all: the bare envelope
    assert await call(api, version, "voicemail/query", {"extid": "1003"},
                      token=token) == b'{"status":"Success"}'
    assert await query({"extid": "9999"}) == SUCCESS


async def test_query_xml(api: ApiHarness, boxes: Mailboxes) -> None:
    leave(boxes, "1002", "95550006666", 17, MARCH_1)
    answer = await call(api, "v0.0.1", "voicemail/query", b"<xml><extid>1002</extid></xml>",
                        "xml")
    assert answer == OK_XML + (
        b"    <voicemails>\n"
        b'        <item id="0">\n'
        b"            <extid>1002</extid>\n"
        b"            <voicemail>\n"
        b'                <item id="0">\n'
        b"                    <voicemailfile>msg0000.wav</voicemailfile>\n"
        b"                    <messagefrom>95550006666</messagefrom>\n"
        b"                    <voicemaildate>2024-03-01 08:40:12</voicemaildate>\n"
        b"                    <voicemaillength>17</voicemaillength>\n"
        b"                </item>\n"
        b"            </voicemail>\n"
        b"        </item>\n"
        b"    </voicemails>\n"
        b"</xml>\n"
    )
    assert await call(api, "v0.0.1", "voicemail/query", b"<xml><extid>1001</extid></xml>",
                      "xml") == OK_XML + b"</xml>\n"


async def test_query_skips_a_message_whose_file_vanished(api: ApiHarness,
                                                         boxes: Mailboxes) -> None:
    three_messages(boxes)
    (boxes.directory / "1002" / "msg0000.wav").unlink()
    assert await call_json(api, "v0.0.1", "voicemail/query") == {
        **SUCCESS, "voicemails": [MAILBOX_1001]}


async def test_query_without_mailboxes_behind_the_api(api: ApiHarness) -> None:
    assert api.ctx.mailboxes is None
    assert await call_json(api, "v0.0.1", "voicemail/query") == SUCCESS


# -- voicemail/delete -------------------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
async def test_delete_one_message_then_all(api: ApiHarness, boxes: Mailboxes,
                                           version: str) -> None:
    three_messages(boxes)
    token = await api.login(version)

    async def delete(body: Any) -> Any:
        return await call_json(api, version, "voicemail/delete", body, token)

    assert await delete({"extid": "1001", "voicemailfile": "msg0000.wav"}) == SUCCESS
    assert not (boxes.directory / "1001" / "msg0000.wav").exists()
    listed = await call_json(api, version, "voicemail/query", {"extid": "1001"}, token)
    assert listed == {**SUCCESS, "voicemails": [
        {"extid": "1001", "voicemail": [MAILBOX_1001["voicemail"][1]]}]}
    assert await delete({"extid": "1001", "voicemailfile": "msg0000.wav"}) == {
        **FAILED, "errno": "20018"}
    assert await delete({"extid": "1001", "voicemailfile": "all"}) == SUCCESS
    assert await delete({"extid": "1001", "voicemailfile": "all"}) == SUCCESS  # empty: fine
    assert await call_json(api, version, "voicemail/query", None, token) == {
        **SUCCESS, "voicemails": [MAILBOX_1002]}
    assert boxes.counts("1001") == (0, 0)


@pytest.mark.parametrize("version", VERSIONS)
async def test_delete_errors(api: ApiHarness, boxes: Mailboxes, version: str) -> None:
    three_messages(boxes)
    token = await api.login(version)

    async def delete(body: Any) -> Any:
        return await call_json(api, version, "voicemail/delete", body, token)

    assert await delete({"extid": "9999", "voicemailfile": "msg0000.wav"}) == {
        **FAILED, "errno": "10006"}
    assert await delete({"extid": "1002", "voicemailfile": "msg0001.wav"}) == {
        **FAILED, "errno": "20018"}
    assert await delete({"extid": "1003", "voicemailfile": "msg0000.wav"}) == {
        **FAILED, "errno": "20018"}  # 1001's and 1002's names are not 1003's
    for name in ("../1001/msg0000.wav", "..", "/etc/passwd", "greeting.wav"):
        assert await delete({"extid": "1002", "voicemailfile": name}) == {
            **FAILED, "errno": "20018"}, name
    assert await delete({"extid": "1002"}) == {**FAILED, "errno": "10004"}
    assert await delete({"voicemailfile": "all"}) == {**FAILED, "errno": "10004"}
    assert len(boxes.messages("1001")) == 2 and len(boxes.messages("1002")) == 1


async def test_delete_xml(api: ApiHarness, boxes: Mailboxes) -> None:
    three_messages(boxes)
    body = DECL + b"<xml><extid>1002</extid><voicemailfile>msg0000.wav</voicemailfile></xml>"
    assert await call(api, "v0.0.1", "voicemail/delete", body, "xml") == OK_XML + b"</xml>\n"
    assert await call(api, "v0.0.1", "voicemail/delete", body, "xml") == (
        DECL + b"<xml>\n    <status>Failed</status>\n    <errno>20018</errno>\n</xml>\n")
    assert boxes.messages("1002") == []


# -- voicemail/get_random and voicemail/download ----------------------------------------------
async def get_random(api: ApiHarness, token: str, version: str = "v0.0.1",
                     **body: str) -> dict[str, Any]:
    result: dict[str, Any] = await call_json(api, version, "voicemail/get_random", body, token)
    return result


@pytest.mark.parametrize("version", VERSIONS)
async def test_download_the_wav_once(api: ApiHarness, boxes: Mailboxes, version: str) -> None:
    three_messages(boxes)
    token = await api.login(version)
    answer = await get_random(api, token, version, extid="1001", voicemailfile="msg0001.wav")
    assert list(answer) == ["status", "extid", "voicemailfile", "random"]
    assert answer["extid"] == "1001" and answer["voicemailfile"] == "msg0001.wav"
    assert re.fullmatch(r"[0-9a-f]{32}", answer["random"])
    response = await download(api, token, answer["random"], version, extid="1001",
                              voicemailfile="msg0001.wav", voicemailstatus="whatever")
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/wav"
    assert response.headers["content-disposition"] == 'attachment; filename="msg0001.wav"'
    assert response.content == (boxes.directory / "1001" / "msg0001.wav").read_bytes()
    assert response.content.startswith(b"RIFF") and len(response.content) == 44 + 1600
    again = await download(api, token, answer["random"], version, extid="1001",
                           voicemailfile="msg0001.wav")
    assert again.json() == {**FAILED, "errno": "20017"}  # once
    assert boxes.counts("1001") == (2, 0)  # a download is no listening: still new


async def test_download_by_post(api: ApiHarness, boxes: Mailboxes) -> None:
    three_messages(boxes)
    token = await api.login()
    answer = await get_random(api, token, extid="1002", voicemailfile="msg0000.wav")
    response = await api.post(f"/api/v0.0.1/voicemail/download?token={token}",
                              json={"random": answer["random"]})
    assert response.headers["content-type"] == "audio/wav"
    assert response.content == (boxes.directory / "1002" / "msg0000.wav").read_bytes()


async def test_get_random_and_download_errors(api: ApiHarness, boxes: Mailboxes) -> None:
    three_messages(boxes)
    token = await api.login()
    one = {"extid": "1001", "voicemailfile": "msg0000.wav"}
    assert await get_random(api, token, extid="1001", voicemailfile="msg0042.wav") == {
        **FAILED, "errno": "20018"}
    assert await get_random(api, token, extid="1001", voicemailfile="../1002/msg0000.wav") == {
        **FAILED, "errno": "20018"}
    assert await get_random(api, token, extid="9999", voicemailfile="msg0000.wav") == {
        **FAILED, "errno": "10006"}
    assert await get_random(api, token, extid="1001") == {**FAILED, "errno": "10004"}
    assert await get_random(api, token, **one, allowedip="nope") == {**FAILED, "errno": "20015"}

    assert (await download(api, token, "0" * 32)).json() == {**FAILED, "errno": "20017"}
    assert (await download(api, token, "")).json() == {**FAILED, "errno": "20017"}
    other = await api.login()
    answer = await get_random(api, token, **one)
    assert (await download(api, other, answer["random"])).json() == {**FAILED,
                                                                     "errno": "20017"}
    answer = await get_random(api, token, **one)
    changed = await download(api, token, answer["random"], extid="1002")
    assert changed.json() == {**FAILED, "errno": "20017"}
    answer = await get_random(api, token, **one)
    changed = await download(api, token, answer["random"], voicemailfile="msg0001.wav")
    assert changed.json() == {**FAILED, "errno": "20017"}

    api.ctx.sessions.check(token).source_ip = "10.9.9.9"  # the app server is elsewhere
    answer = await get_random(api, token, **one)
    assert (await download(api, token, answer["random"])).json() == {**FAILED, "errno": "20015"}
    answer = await get_random(api, token, **one, allowedip="127.0.0.1")
    assert (await download(api, token, answer["random"])).status_code == 200

    answer = await get_random(api, token, **one, allowedip="127.0.0.1")
    assert await call_json(api, "v0.0.1", "voicemail/delete", one, token) == SUCCESS
    assert (await download(api, token, answer["random"])).json() == {**FAILED, "errno": "20018"}

    response = await api.client.get("/api/v0.0.1/voicemail/download", params={"random": "x"})
    assert response.json() == {**FAILED, "errno": "20005"}


async def test_a_recording_random_is_no_voicemail_random(api: ApiHarness,
                                                         boxes: Mailboxes) -> None:
    three_messages(boxes)
    token = await api.login()
    random = api.ctx.downloads.issue(token, "recording", {"recording": "msg0000.wav"},
                                     frozenset({"127.0.0.1"}))
    response = await download(api, token, random, extid="1001", voicemailfile="msg0000.wav")
    assert response.json() == {**FAILED, "errno": "20017"}


async def test_get_random_xml(api: ApiHarness, boxes: Mailboxes) -> None:
    three_messages(boxes)
    token = await api.login()
    body = DECL + b"<xml><extid>1001</extid><voicemailfile>msg0000.wav</voicemailfile></xml>"
    answer = await call(api, "v0.0.1", "voicemail/get_random", body, "xml", token)
    match = re.fullmatch(
        rb'<\?xml version="1\.0" encoding="UTF-8" \?>\n<xml>\n    <status>Success</status>\n'
        rb"    <extid>1001</extid>\n    <voicemailfile>msg0000.wav</voicemailfile>\n"
        rb"    <random>([0-9a-f]{32})</random>\n</xml>\n", answer)
    assert match, answer
    fetched = await download(api, token, match[1].decode(), extid="1001",
                             voicemailfile="msg0000.wav")
    assert fetched.content == (boxes.directory / "1001" / "msg0000.wav").read_bytes()
    missing = DECL + b"<xml><extid>1003</extid><voicemailfile>msg0000.wav</voicemailfile></xml>"
    assert await call(api, "v0.0.1", "voicemail/get_random", missing, "xml", token) == (
        DECL + b"<xml>\n    <status>Failed</status>\n    <errno>20018</errno>\n</xml>\n")


async def test_without_mailboxes_no_message_exists(api: ApiHarness) -> None:
    token = await api.login()
    one = {"extid": "1001", "voicemailfile": "msg0000.wav"}
    assert await get_random(api, token, **one) == {**FAILED, "errno": "20018"}
    assert await call_json(api, "v0.0.1", "voicemail/delete", one, token) == {
        **FAILED, "errno": "20018"}
