"""The media plane as one part of the app: the engine, the B2BUA's anchor, engine restarts.

`MediaService.start()` starts the media engine `[media]` asks for (ippbx's own supervised
rtpengine, or external ones; nothing with `engine = "none"` or no rtpengine installed)
and hands the B2BUA a `MediaAnchor` on it, so every call's SDP goes through the engine
from then on. When the engine dies and is started again, the calls it carried have lost
their audio: they are hung up (BYE to both parties, their CDRs and reports as for any
call ippbx ends), rather than left up in silence. `stop()` lets the engine's deletes
finish and stops it; it runs after the PBX has ended its calls.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ippbx.config import Config
from ippbx.media.engine import MediaEngine
from ippbx.media.moh import write_default
from ippbx.media.recordings import Recordings
from ippbx.media.rtpengine import REPEAT_FOREVER, MediaError
from ippbx.pbx.b2bua import B2BUA
from ippbx.pbx.media_anchor import MediaAnchor

log = logging.getLogger(__name__)

SPOOL = ".spool"  # rtpengine's recording directory, inside [media] recordings
MOH_FILE = "ippbx-moh.wav"  # the built-in music, written beside the store


class MediaService:
    """Runs the media engine and anchors the B2BUA's calls on it."""

    def __init__(self, config: Config, b2bua: B2BUA) -> None:
        self.config = config
        self.b2bua = b2bua
        media = config.media
        self.recordings = Recordings(media.recordings, Path(media.recordings) / SPOOL)
        self.engine: MediaEngine | None = MediaEngine.from_config(
            media, on_restart=self._restarted)
        if self.engine is not None:  # (rtpengine writes its pcaps there)
            self.engine.recording_dir = Path(media.recordings).resolve() / SPOOL
        self.anchor: MediaAnchor | None = None

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
        self.anchor = MediaAnchor(self.engine.client, self.moh_file(), (MediaError,),
                                  repeat=REPEAT_FOREVER)
        self.b2bua.media = self.anchor
        log.info("media: rtpengine at %s, media on %s ports %d-%d",
                 ", ".join(self.engine.ng_addresses), self.config.media.interface,
                 self.config.media.port_min, self.config.media.port_max)

    async def stop(self) -> None:
        if self.anchor is not None:
            await self.anchor.stop()
        self.b2bua.media = None
        self.anchor = None
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
