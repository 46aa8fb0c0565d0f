"""Do-not-disturb and forward-always as they stand: the configuration's values, unless a
phone changed them with a feature code (`*78`/`*79`, `*21NUMBER`/`*22`); those changes
are kept in the store and outlive a restart."""

from __future__ import annotations

import logging

from ippbx.config import Config
from ippbx.store.features import FeatureTable

log = logging.getLogger(__name__)


class ExtensionFeatures:
    """The run-time settings of every extension (the B2BUA's `ExtensionSettings`)."""

    def __init__(self, config: Config, store: FeatureTable | None = None) -> None:
        self._config = {e.number: e for e in config.extensions}
        self._store = store
        self._dnd: dict[str, bool] = {}
        self._forward: dict[str, str] = {}
        if store is not None:
            for number, (dnd, forward) in store.features_load().items():
                if number not in self._config:
                    continue  # (an extension since removed from the file)
                if dnd is not None:
                    self._dnd[number] = dnd
                if forward is not None:
                    self._forward[number] = forward

    def reconfigure(self, config: Config) -> None:
        """The extensions of a new configuration (a phone's own settings are kept)."""
        self._config = {e.number: e for e in config.extensions}

    def dnd(self, number: str) -> bool:
        ext = self._config.get(number)
        return self._dnd.get(number, ext.dnd if ext is not None else False)

    def forward_always(self, number: str) -> str:
        ext = self._config.get(number)
        return self._forward.get(number, ext.forward_always if ext is not None else "")

    def set_dnd(self, number: str, on: bool) -> None:
        if number not in self._config:
            return
        self._dnd[number] = on
        log.info("extension %s: do-not-disturb %s", number, "on" if on else "off")
        self._save(number)

    def set_forward(self, number: str, target: str) -> None:
        """Forward every call of `number` to `target` (a destination; "": stop)."""
        if number not in self._config:
            return
        self._forward[number] = target
        log.info("extension %s: forward-always %s", number, target or "off")
        self._save(number)

    def _save(self, number: str) -> None:
        if self._store is not None:
            self._store.features_save(number, self._dnd.get(number),
                                      self._forward.get(number))
