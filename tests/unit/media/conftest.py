"""The media unit tests use the audio helpers of the integration tier (`rtp_audio`: µ-law,
tone analysis, WAV reading), which are pure functions: put that directory on the path."""

from __future__ import annotations

import sys
from pathlib import Path

_INTEGRATION = str(Path(__file__).resolve().parents[2] / "integration")
if _INTEGRATION not in sys.path:
    sys.path.append(_INTEGRATION)
