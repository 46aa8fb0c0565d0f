"""ippbx.media.prompts: the built-in prompts (there, playable, not silent, short; the beep
a 1 kHz tone), the set the generator makes, finding a prompt by name, and playprompt's
prompt_files falling back to the built-in ones."""

from __future__ import annotations

import importlib.util
import wave
from pathlib import Path
from types import ModuleType

import pytest
from rtp_audio import dominant_frequency, read_wav, rms_dbfs, write_tone_wav

from ippbx.media.prompts import BUILTIN_DIR, BUILTIN_PROMPTS, find_prompt
from ippbx.pbx.prompt_calls import PromptError, prompt_files

MAX_SECONDS = 10.0
MIN_RMS_DBFS = -35.0  # speech normalised to -3 dBFS peak sits far above this
TOOL = Path(__file__).resolve().parents[3] / "tools" / "make_prompts.py"


def load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_prompts", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_package_holds_exactly_the_built_in_set() -> None:
    assert {p.stem for p in BUILTIN_DIR.glob("*.wav")} == BUILTIN_PROMPTS
    assert {f"digit-{n}" for n in range(10)} <= BUILTIN_PROMPTS
    assert {"welcome", "goodbye", "beep", "vm-menu"} <= BUILTIN_PROMPTS
    assert load_tool().NAMES == BUILTIN_PROMPTS  # (the generator makes this very set)


@pytest.mark.parametrize("name", sorted(BUILTIN_PROMPTS))
def test_each_built_in_prompt_is_short_audible_telephone_audio(name: str) -> None:
    path = BUILTIN_DIR / f"{name}.wav"
    assert path.is_file()
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        assert wav.getcomptype() == "NONE"
        seconds = wav.getnframes() / 8000
    assert 0.1 < seconds < MAX_SECONDS, seconds
    samples = read_wav(path)
    assert rms_dbfs(samples) > MIN_RMS_DBFS, name
    peak = int(abs(samples.astype(int)).max())
    assert 0.5 * 32768 < peak < 32767, peak  # (about -3 dBFS, not clipped)


def test_the_ringback_rings_one_second_in_five_at_425_hz() -> None:
    samples = read_wav(BUILTIN_DIR / "ringback.wav")
    assert samples.size == 5 * 8000
    tone, pause = samples[: 8000], samples[8000:]
    assert abs(dominant_frequency(tone) - 425.0) < 5
    assert not pause.any()


def test_the_beep_is_a_one_kilohertz_tone_with_soft_edges() -> None:
    samples = read_wav(BUILTIN_DIR / "beep.wav")
    assert abs(dominant_frequency(samples) - 1000.0) < 10
    assert abs(len(samples) / 8000 - 0.4) < 0.01
    assert abs(int(samples[0])) < 500 and abs(int(samples[-1])) < 500  # (faded, no click)


def test_the_set_is_small() -> None:
    # (1 MiB until the conference phrases came; 8 kHz 16-bit speech is 16 KB a second)
    total = sum(p.stat().st_size for p in BUILTIN_DIR.glob("*.wav"))
    assert total < 1.5 * 1024 * 1024, total


def test_find_prompt_prefers_the_users_file_then_the_built_in(tmp_path: Path) -> None:
    assert find_prompt("goodbye", tmp_path) == BUILTIN_DIR / "goodbye.wav"
    mine = write_tone_wav(tmp_path / "goodbye.wav", 440.0, 0.5)
    assert find_prompt("goodbye", tmp_path) == mine
    assert find_prompt("goodbye", str(tmp_path)) == mine
    own = write_tone_wav(tmp_path / "my_menu.v2.wav", 440.0, 0.5)
    assert find_prompt("my_menu.v2", tmp_path) == own  # (a user-only name)
    assert find_prompt("nosuch", tmp_path) is None
    (tmp_path / "welcome.wav").mkdir()  # (not a file: the built-in one)
    assert find_prompt("welcome", tmp_path) == BUILTIN_DIR / "welcome.wav"


@pytest.mark.parametrize("name", [
    "../x", "..", ".hidden", "a/b", "/etc/passwd", "a\\b", "", "a..b", "go odbye", "beep\n",
    "../prompts/goodbye",
])
def test_find_prompt_refuses_names_that_are_not_plain_file_names(
        name: str, tmp_path: Path) -> None:
    (tmp_path / ".hidden.wav").write_bytes(b"")
    (tmp_path / "a").mkdir()
    write_tone_wav(tmp_path / "a" / "b.wav", 440.0, 0.5)
    write_tone_wav(tmp_path / "x.wav", 440.0, 0.5)
    # (each would name an existing file from one of these directories)
    assert find_prompt(name, tmp_path) is None
    assert find_prompt(name, tmp_path / "a") is None


def test_prompt_files_falls_back_to_built_in_prompts(tmp_path: Path) -> None:
    mine = write_tone_wav(tmp_path / "greet1.wav", 500.0, 0.5)
    assert prompt_files(tmp_path, "goodbye") == [(BUILTIN_DIR / "goodbye.wav").resolve()]
    assert prompt_files(tmp_path, "greet1+beep+digit-7") == [
        mine.resolve(), (BUILTIN_DIR / "beep.wav").resolve(),
        (BUILTIN_DIR / "digit-7.wav").resolve()]
    # the user's own file of a built-in name wins; a missing directory is no user files
    own = write_tone_wav(tmp_path / "beep.wav", 700.0, 0.5)
    assert prompt_files(tmp_path, "beep") == [own.resolve()]
    assert prompt_files(tmp_path / "absent", "beep") == [(BUILTIN_DIR / "beep.wav").resolve()]
    for bad in ("nosuch", "../prompts/goodbye", "123", "goodbye+", "goodbye+nosuch"):
        with pytest.raises(PromptError) as refused:
            prompt_files(tmp_path, bad)
        assert refused.value.reason == PromptError.NO_PROMPT
