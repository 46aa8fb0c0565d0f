"""The media anchor's own rules (pbx/media_anchor.py), against the engine model of
`pbx_stack`: what passes through when the engine is down or failing,
what happens to a call that ends with an offer out, and what a finished call leaves."""

from __future__ import annotations

import asyncio

import pytest
from pbx_stack import ENGINE_HOST, EngineModel, make_sdp

from ippbx.pbx import media_anchor
from ippbx.pbx.media_anchor import MediaAnchor

PHONE = make_sdp("phone", "10.0.2.1")
CARRIER = make_sdp("carrier", "10.0.1.1")


def anchor(engine: EngineModel, **kw: object) -> MediaAnchor:
    return MediaAnchor(engine, "moh.wav", (LookupError,), **kw)  # type: ignore[arg-type]


async def test_offer_and_answer_give_the_engine_sdp_and_end_deletes() -> None:
    engine = EngineModel(0.0)
    media = anchor(engine)
    offered = await media.offer("c1", "a", "b", PHONE)
    assert ENGINE_HOST.encode() in offered and media.anchored("c1")
    answered = await media.answer("c1", "a", "b", CARRIER)
    assert ENGINE_HOST.encode() in answered
    media.end("c1")
    await media.stop()
    assert engine.calls == set() and engine.deleted == {"c1"} and media.calls == 0


async def test_an_engine_being_restarted_is_not_waited_for() -> None:
    engine = EngineModel(0.0)
    up = [False]
    media = anchor(engine, available=lambda: up[0])
    assert await media.offer("c1", "a", "b", PHONE) == PHONE  # end to end, at once
    up[0] = True
    # the call stays end to end; a new call is anchored again
    assert await media.offer("c1", "a", "b", PHONE) == PHONE
    assert await media.answer("c1", "a", "b", CARRIER) == CARRIER
    assert ENGINE_HOST.encode() in await media.offer("c2", "a", "b", PHONE)
    assert engine.calls == {"c2"}


async def test_an_answer_to_no_offer_is_dropped_not_relayed() -> None:
    media = anchor(EngineModel(0.0))
    assert await media.answer("c1", "a", "b", CARRIER) == b""


async def test_a_call_ending_with_its_offer_out_leaves_no_engine_call() -> None:
    engine = EngineModel(0.05)
    media = anchor(engine)
    offer = asyncio.ensure_future(media.offer("c1", "a", "b", PHONE))
    await asyncio.sleep(0.01)
    media.end("c1")  # (the offer is still with the engine)
    assert await offer == b""  # nothing to relay for a finished call
    await media.stop()
    assert engine.calls == set() and not media.anchored("c1") and media.held() == 0


async def test_a_failing_engine_lets_the_call_through_end_to_end() -> None:
    class Broken(EngineModel):
        async def offer(self, call_id: str, from_tag: str, sdp: bytes, *,
                        to_tag: str | None = None) -> bytes:
            raise LookupError("engine gone")

    media = anchor(Broken(0.0))
    assert await media.offer("c1", "a", "b", PHONE) == PHONE
    assert await media.answer("c1", "a", "b", CARRIER) == CARRIER  # (unanchored: as is)
    assert media.failures == 1 and not media.anchored("c1")


async def test_a_call_ending_while_its_offer_fails_leaves_nothing() -> None:
    class Slow(EngineModel):
        async def offer(self, call_id: str, from_tag: str, sdp: bytes, *,
                        to_tag: str | None = None) -> bytes:
            await asyncio.sleep(0.05)
            raise LookupError("engine gone")

    media = anchor(Slow(0.0))
    offer = asyncio.ensure_future(media.offer("c1", "a", "b", PHONE))
    await asyncio.sleep(0.01)
    media.end("c1")
    assert await offer == b""
    await media.stop()
    assert media.held() == 0


async def test_hold_then_unhold_at_once_ends_off_hold_at_the_engine() -> None:
    """Both asked before the engine answered the first: they reach it in that order, so
    no music plays and the holder is heard again."""
    engine = EngineModel(0.01)
    media = anchor(engine)
    await media.offer("c1", "a", "b", PHONE)
    hold = asyncio.ensure_future(media.hold_music("c1", "b", "a", True))
    unhold = asyncio.ensure_future(media.hold_music("c1", "b", "a", False))
    assert await hold and await unhold
    assert engine.playing == set() and engine.blocked == set()
    # muted by the API meanwhile: the unhold leaves the holder muted
    assert await media.mute("c1", "a", True)
    assert await media.hold_music("c1", "b", "a", True)
    assert engine.playing == {("c1", "b")}
    assert await media.hold_music("c1", "b", "a", False)
    assert engine.playing == set() and engine.blocked == {("c1", "a")}
    media.end("c1")
    await media.stop()
    assert media.held() == 0


async def test_a_delete_the_engine_drops_is_asked_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A busy engine that does not answer a delete would keep the call (and its ports)
    for its own timeout: the anchor asks again, a bounded number of times."""
    monkeypatch.setattr(media_anchor, "DELETE_RETRY_SECONDS", 0.01)
    engine = EngineModel(0.0)
    tries: list[str] = []
    real_delete = engine.delete

    async def flaky(call_id: str, from_tag: str | None = None) -> None:
        tries.append(call_id)
        if len(tries) < 3:
            raise LookupError("no answer")
        await real_delete(call_id, from_tag)

    engine.delete = flaky  # type: ignore[method-assign]
    media = anchor(engine)
    await media.offer("c1", "a", "b", PHONE)
    media.end("c1")
    await media.stop()
    assert tries == ["c1"] * 3 and engine.calls == set()

    async def deletes_raising(call_id: str, error: Exception) -> list[str]:
        """The deletes asked of an engine whose every delete raises `error`."""
        asked: list[str] = []

        async def failing(call_id: str, from_tag: str | None = None) -> None:
            asked.append(call_id)
            raise error

        engine.delete = failing  # type: ignore[method-assign]
        await media.offer(call_id, "a", "b", PHONE)
        media.end(call_id)
        await media.stop()
        return asked

    # no answer at all: asked again, then it gives up (said in the log)
    assert await deletes_raising("c2", LookupError("never")) == \
        ["c2"] * media_anchor.DELETE_TRIES

    class Refused(LookupError):  # (as MediaError: the engine's answer says why)
        reason = "Internal error"

    tries = await deletes_raising("c3", Refused("delete: Internal error"))
    assert tries == ["c3"]  # (an engine that answered an error would only say it again)
