"""recording/get_random and recording/download over real HTTP: the WAV, once, errnos,
names that try to leave the recordings directory, both dialects."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from rtp_audio import write_tone_wav

from ippbx.media.recordings import Recordings

if TYPE_CHECKING:
    from conftest import ApiHarness

pytestmark = pytest.mark.asyncio(loop_scope="session")

NAME = "exten-2101-2103-20240301-101500-1709288100.601.wav"  # the vendor's example
DECL = b'<?xml version="1.0" encoding="UTF-8" ?>\n'
FAILED = {"status": "Failed"}


@pytest.fixture
def recordings(api: ApiHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Recordings:
    directory = tmp_path / "recordings"
    directory.mkdir()
    write_tone_wav(directory / NAME, 700, 0.5)
    (tmp_path / "secret.wav").write_bytes(b"RIFF outside the recordings directory")
    made = Recordings(directory)
    monkeypatch.setattr(api.ctx, "recordings", made)
    return made


async def get_random(api: ApiHarness, token: str, version: str = "v0.0.1",
                     **body: str) -> dict[str, Any]:
    response = await api.post(f"/api/{version}/recording/get_random?token={token}", json=body)
    result: dict[str, Any] = response.json()
    return result


async def download(api: ApiHarness, token: str, random: str, version: str = "v0.0.1",
                   **extra: str) -> httpx.Response:
    params = {"token": token, "random": random, **extra}
    return await api.client.get(f"/api/{version}/recording/download", params=params)


@pytest.mark.parametrize("version", ["v0.0.1", "v1.1.0"])
async def test_download_the_wav_once(api: ApiHarness, recordings: Recordings,
                                     version: str) -> None:
    token = await api.login(version)
    answer = await get_random(api, token, version, recording=NAME)
    assert list(answer) == ["status", "recording", "random"]
    assert answer["status"] == "Success" and answer["recording"] == NAME
    assert re.fullmatch(r"[0-9a-f]{32}", answer["random"])
    response = await download(api, token, answer["random"], version, recording=NAME)
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/wav"
    assert response.headers["content-disposition"] == f'attachment; filename="{NAME}"'
    assert response.content == (recordings.directory / NAME).read_bytes()
    assert response.content.startswith(b"RIFF") and len(response.content) == 44 + 8000
    again = await download(api, token, answer["random"], version, recording=NAME)
    assert again.json() == {**FAILED, "errno": "20012"}  # once


async def test_errors(api: ApiHarness, recordings: Recordings) -> None:
    token = await api.login()
    assert await get_random(api, token, recording="exten-1-2-20240301-101500-9.wav") == {
        **FAILED, "errno": "20014"}
    assert await get_random(api, token) == {**FAILED, "errno": "10004"}
    assert await get_random(api, token, recording=NAME, allowedip="nope") == {
        **FAILED, "errno": "20015"}
    assert (await download(api, token, "0" * 32)).json() == {**FAILED, "errno": "20012"}
    assert (await download(api, token, "")).json() == {**FAILED, "errno": "20012"}

    other = await api.login()
    answer = await get_random(api, token, recording=NAME)
    assert (await download(api, other, answer["random"])).json() == {**FAILED,
                                                                     "errno": "20012"}
    answer = await get_random(api, token, recording=NAME)
    changed = await download(api, token, answer["random"], recording="../secret.wav")
    assert changed.json() == {**FAILED, "errno": "20012"}

    api.ctx.sessions.check(token).source_ip = "10.9.9.9"  # the app server is elsewhere
    answer = await get_random(api, token, recording=NAME)
    assert (await download(api, token, answer["random"])).json() == {**FAILED, "errno": "20015"}
    answer = await get_random(api, token, recording=NAME, allowedip="127.0.0.1")
    assert (await download(api, token, answer["random"])).status_code == 200

    answer = await get_random(api, token, recording=NAME, allowedip="127.0.0.1")
    (recordings.directory / NAME).unlink()  # pruned in between
    assert (await download(api, token, answer["random"])).json() == {**FAILED, "errno": "20014"}

    response = await api.client.get("/api/v0.0.1/recording/download", params={"random": "x"})
    assert response.json() == {**FAILED, "errno": "20005"}


@pytest.mark.parametrize("name", [
    "../secret.wav", "..", "../../../../etc/passwd", "/etc/passwd", "recordings/../secret.wav",
    "..%2Fsecret.wav", "..\\secret.wav", ".", "/", f"./{NAME}", f"{NAME}/", " ../secret.wav",
])
async def test_names_outside_the_directory_do_not_exist(api: ApiHarness, recordings: Recordings,
                                                        name: str) -> None:
    token = await api.login()
    assert await get_random(api, token, recording=name) == {**FAILED, "errno": "20014"}


async def test_without_a_recordings_directory_nothing_exists(api: ApiHarness) -> None:
    assert api.ctx.recordings is None
    token = await api.login()
    assert await get_random(api, token, recording=NAME) == {**FAILED, "errno": "20014"}


async def test_xml_dialect(api: ApiHarness, recordings: Recordings) -> None:
    token = await api.login()
    body = DECL + f"<xml>\n    <recording>{NAME}</recording>\n</xml>".encode()
    response = await api.post(f"/api/v0.0.1/recording/get_random?token={token}&type=xml",
                              content=body)
    match = re.fullmatch(
        rb'<\?xml version="1\.0" encoding="UTF-8" \?>\n<xml>\n    <status>Success</status>\n'
        rb"    <recording>" + re.escape(NAME.encode()) + rb"</recording>\n"
        rb"    <random>([0-9a-f]{32})</random>\n</xml>\n", response.content)
    assert match, response.content
    fetched = await download(api, token, match[1].decode(), recording=NAME)
    assert fetched.headers["content-type"] == "audio/wav"
    missing = await api.post(f"/api/v0.0.1/recording/get_random?token={token}&type=xml",
                             content=b"<xml><recording>nope.wav</recording></xml>")
    assert missing.content == (DECL + b"<xml>\n    <status>Failed</status>\n"
                               b"    <errno>20014</errno>\n</xml>\n")
