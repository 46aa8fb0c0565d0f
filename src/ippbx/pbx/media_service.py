"""The media plane as one part of the app: the engine, the B2BUA's anchor, engine restarts.

`MediaService.start()` starts the media engine `[media]` asks for (ippbx's own supervised
rtpengine, or external ones; nothing with `engine = "none"` or no rtpengine installed)
and hands the B2BUA a `MediaAnchor` on it, so every call's SDP goes through the engine
from then on. When the engine dies and is started again, the calls it carried have lost
their audio: they are hung up (BYE to both parties, their CDRs and reports as for any
call ippbx ends), rather than left up in silence. A recorded call (`record = true` on
one of its extensions, trunks or routes) that ended becomes a WAV in `[media]
recordings` once the engine's pcap of it is closed (converted in a worker thread);
recordings older than `keep_recordings_days` are pruned hourly. `stop()` lets the
engine's deletes and the conversions under way finish and stops the engine; it runs
after the PBX has ended its calls.

The conference mixer (Janus AudioBridge, `[media] janus`) starts with the engine when
the configuration has conference rooms (or once a change adds the first): ippbx's
own janus when it is installed (its RTP on the media interface, ports `janus_port_min`..
`janus_port_max`), or an external one at a URL. It is only useful beside the engine (a
member's audio reaches it through rtpengine), so with no engine there is no mixer. A
mixer that cannot start is logged and leaves the PBX running without conferences.
`mixer()` is its client while it runs; when it comes back after dying, `on_mixer_restart`
is called (its rooms are gone).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from ippbx.config import Config
from ippbx.media.engine import DtmfEvent, MediaEngine
from ippbx.media.janus import JanusClient, JanusEngine, JanusError, find_janus
from ippbx.media.moh import write_default
from ippbx.media.recordings import RecordingError, Recordings
from ippbx.media.rtpengine import REPEAT_FOREVER, MediaError
from ippbx.pbx.b2bua import B2BUA
from ippbx.pbx.media_anchor import MediaAnchor

log = logging.getLogger(__name__)

SPOOL = ".spool"  # rtpengine's recording directory, inside [media] recordings
MOH_FILE = "ippbx-moh.wav"  # the built-in music, written beside the store
PCAP_WAIT = 5.0  # seconds a deleted call's pcap may take to be closed
PRUNE_EVERY = 3600.0  # seconds between two prunings of old recordings
ENGINE_TIMEOUT = 86400  # seconds without RTP before our rtpengine drops a call itself


class MediaService:
    """Runs the media engine and anchors the B2BUA's calls on it."""

    def __init__(self, config: Config, b2bua: B2BUA) -> None:
        self.config = config
        self.b2bua = b2bua
        media = config.media
        self.recordings = Recordings(media.recordings, Path(media.recordings) / SPOOL)
        self.engine: MediaEngine | None = MediaEngine.from_config(
            media, on_restart=self._restarted, on_dtmf=self._dtmf)
        if self.engine is not None:  # (rtpengine writes its pcaps there)
            self.engine.recording_dir = Path(media.recordings).resolve() / SPOOL
            # rtpengine drops a call that received no RTP for --timeout (60 s by
            # default; --silent-timeout, an hour, for a held one) without a word to us:
            # a call held both ways sends none. Calls end by SIP here (BYE,
            # session timers, max_duration) and their engine call is deleted with them.
            self.engine.extra_args += [f"--timeout={ENGINE_TIMEOUT}",
                                       f"--silent-timeout={ENGINE_TIMEOUT}"]
        self.anchor: MediaAnchor | None = None
        self.janus: JanusEngine | None = None  # the conference mixer, while it runs
        self._mixer_start: asyncio.Future[None] | None = None
        self.on_mixer_restart: Callable[[], object] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._pruner: asyncio.Task[None] | None = None
        self.converted = 0  # recordings made into WAVs
        # call id → what takes its recording once made (voicemail), instead of the
        # recordings directory keeping it
        self._claims: dict[str, Callable[[Path], None]] = {}

    def claim_recording(self, call_id: str, take: Callable[[Path], None]) -> None:
        """The recording of call `call_id`, once made, goes to `take(wav)`."""
        self._claims[call_id] = take

    @property
    def enabled(self) -> bool:
        return self.engine is not None

    def moh_file(self) -> str:
        """The music-on-hold WAV: `[media] moh`, or the built-in tune written beside the
        store."""
        if self.config.media.moh:
            return self.config.media.moh
        store = Path(self.config.store.path)
        return str(write_default(store.resolve().parent / MOH_FILE))

    async def start(self) -> None:
        if self.engine is None:
            log.info("media: none (SDP passes end to end; no music on hold, mute or "
                     "recording)")
            return
        await self.engine.start()
        assert self.engine.client is not None
        engine = self.engine
        self.anchor = MediaAnchor(engine.client, self.moh_file(), (MediaError,),
                                  repeat=REPEAT_FOREVER, available=lambda: engine.ready)
        self.anchor.on_recorded = self._recorded
        self.b2bua.media = self.anchor
        self._pruner = asyncio.ensure_future(self._prune_now_and_then())
        log.info("media: rtpengine at %s, media on %s ports %d-%d",
                 ", ".join(self.engine.ng_addresses), self.config.media.interface,
                 self.config.media.port_min, self.config.media.port_max)
        await self._start_mixer()

    def mixer(self) -> JanusClient | None:
        """The conference mixer's client, while the mixer runs."""
        janus = self.janus
        return janus.client if janus is not None and janus.ready else None

    def reconfigure(self, config: Config) -> None:
        """A configuration change: the first conference room starts the mixer."""
        self.config = config
        if config.conferences and self.janus is None and self.anchor is not None \
                and self._mixer_start is None:
            self._mixer_start = asyncio.ensure_future(self._start_mixer())

    async def _start_mixer(self) -> None:
        media = self.config.media
        if media.janus == "none" or not self.config.conferences:
            return  # (no rooms: no mixer process, until a room is configured)
        binary = find_janus() if not media.janus else None
        if not media.janus and binary is None:
            log.info("media: no conference mixer (janus is not installed)")
            return
        janus = JanusEngine(url=media.janus, binary=binary,
                            interface=media.interface.split("!")[0],
                            rtp_port_min=media.janus_port_min,
                            rtp_port_max=media.janus_port_max,
                            on_restart=self._mixer_restarted)
        try:
            await janus.start()
        except JanusError as exc:
            log.warning("media: the conference mixer (janus) did not start: %s; no "
                        "conferences", exc)
            await janus.stop()
            return
        self.janus = janus
        log.info("media: conference mixer janus at %s", janus.url)

    def _mixer_restarted(self) -> None:
        if self.on_mixer_restart is not None:
            self.on_mixer_restart()

    async def stop(self) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
            self._pruner = None
        if self.anchor is not None:
            await self.anchor.stop()
        if self._tasks:  # (recordings still being converted; a pcap left is kept)
            await asyncio.wait(list(self._tasks), timeout=10.0)
        self.b2bua.media = None
        self.anchor = None
        if self._mixer_start is not None:
            self._mixer_start.cancel()
            self._mixer_start = None
        if self.janus is not None:
            await self.janus.stop()
            self.janus = None
        if self.engine is not None:
            await self.engine.stop()

    def _restarted(self, lost: list[str]) -> None:
        """The engine came back after dying: every call it anchored lost its audio."""
        anchor = self.anchor
        callids = set(lost) | set(anchor.lost() if anchor is not None else ())
        bridges = [self.b2bua.bridges[c] for c in sorted(callids) if c in self.b2bua.bridges]
        if bridges:
            log.warning("media engine restarted: hanging up %d call(s) whose audio it "
                        "carried", len(bridges))
        for bridge in bridges:
            self.b2bua.teardown(bridge, 503)

    def _dtmf(self, event: DtmfEvent) -> None:
        """A digit rtpengine saw (its call id is ours, its tag the sender's leg id)."""
        if event.digit:
            self.b2bua.registry.dtmf(event.call_id, event.source_tag, event.digit)
            self.b2bua.digit(event.call_id, event.source_tag, event.digit)

    # -- recordings ---------------------------------------------------------------------
    def _recorded(self, call_id: str, name: str) -> None:
        task = asyncio.ensure_future(self._convert(call_id, name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _convert(self, call_id: str, name: str) -> None:
        """The engine's pcap of a recorded call that ended becomes the WAV `name` (or
        goes to whoever claimed it)."""
        take = self._claims.pop(call_id, None)
        recordings = self.recordings
        deadline = time.monotonic() + PCAP_WAIT
        while True:
            pcaps = recordings.pcaps_for(call_id)
            if pcaps and all(recordings.is_closed(p) for p in pcaps):
                break
            if time.monotonic() > deadline:
                log.warning("recording %s: rtpengine's pcap of call %s %s", name, call_id,
                            "never closed" if pcaps else "not found")
                if not pcaps:
                    return
                break
            await asyncio.sleep(0.05)
        try:
            wav = await asyncio.to_thread(recordings.finish, pcaps[-1], name)
        except (RecordingError, OSError, ValueError) as exc:
            log.warning("recording %s of call %s could not be made (%s)", name, call_id, exc)
            return
        self.converted += 1
        if take is not None:
            try:
                take(wav)
            except Exception:  # (one failing mailbox must not stop the next recordings)
                log.exception("recording %s of call %s: could not be handed over", name,
                              call_id)

    async def _prune_now_and_then(self) -> None:
        keep = self.config.media.keep_recordings_days
        while keep:
            try:
                removed = await asyncio.to_thread(self.recordings.prune, keep)
            except OSError as exc:
                log.warning("pruning old recordings failed (%s)", exc)
            else:
                if removed:
                    log.info("removed %d recording(s) older than %d days", removed, keep)
            await asyncio.sleep(PRUNE_EVERY)
