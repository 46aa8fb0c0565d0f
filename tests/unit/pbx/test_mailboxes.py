"""Voicemail mailboxes on a real SQLite file and a real directory: deposits and their
names, listings, new/old counts, deletes, message-waiting callbacks, full mailboxes,
files that vanished, names that try to leave the mailbox, greetings, a restart."""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from ippbx.pbx.mailboxes import Mailboxes, Message
from ippbx.store.sqlite import Store


def write_wav(path: Path, seconds: float = 0.1, level: int = 1000) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(level.to_bytes(2, "little", signed=True) * int(8000 * seconds))
    return path


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 60
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    made = Store(tmp_path / "ippbx.sqlite3")
    yield made
    made.close()


@pytest.fixture
def changes() -> list[str]:
    """The mailboxes `on_change` was called for, in order."""
    return []


@pytest.fixture
def boxes(tmp_path: Path, store: Store, changes: list[str]) -> Mailboxes:
    made = Mailboxes(tmp_path / "voicemail", store, clock=Clock(), max_messages=3)
    made.on_change = changes.append
    return made


def leave(boxes: Mailboxes, tmp_path: Path, mailbox: str = "1001", caller: str = "1002",
          seconds: int = 7, name: str = "recorded.wav") -> Message | None:
    return boxes.deposit(mailbox, caller, write_wav(tmp_path / name), seconds)


def test_deposit_moves_the_wav_in_and_numbers_from_0000(boxes: Mailboxes, changes: list[str],
                                                        tmp_path: Path) -> None:
    recorded = write_wav(tmp_path / "recorded.wav")
    audio = recorded.read_bytes()
    first = boxes.deposit("1001", "95551234", recorded, 7)
    assert first == Message("1001", "msg0000.wav", "95551234", 1_700_000_060.0, 7, False)
    assert not recorded.exists()
    assert (tmp_path / "voicemail" / "1001" / "msg0000.wav").read_bytes() == audio
    second = leave(boxes, tmp_path, caller="1003")
    assert second is not None and second.file == "msg0001.wav"
    assert boxes.messages("1001") == [first, second]
    assert boxes.counts("1001") == (2, 0)
    assert changes == ["1001", "1001"]
    assert boxes.messages("1002") == [] and boxes.counts("1002") == (0, 0)


def test_all_messages_by_mailbox(boxes: Mailboxes, tmp_path: Path) -> None:
    a = leave(boxes, tmp_path, "1002")
    b = leave(boxes, tmp_path, "1001")
    c = leave(boxes, tmp_path, "1002")
    assert boxes.all_messages() == {"1001": [b], "1002": [a, c]}


def test_heard_messages_count_as_old(boxes: Mailboxes, changes: list[str], tmp_path: Path) -> None:
    first = leave(boxes, tmp_path)
    leave(boxes, tmp_path)
    assert first is not None
    changes.clear()
    boxes.mark_heard("1001", first.file)
    assert boxes.counts("1001") == (1, 1)
    assert boxes.messages("1001")[0].heard
    assert changes == ["1001"]
    boxes.mark_heard("1001", first.file)  # heard already: nothing changes
    boxes.mark_heard("1001", "msg0042.wav")  # no such message: nothing either
    assert changes == ["1001"]
    assert boxes.counts("1001") == (1, 1)


def test_delete_one_and_all(boxes: Mailboxes, changes: list[str], tmp_path: Path) -> None:
    first, second = leave(boxes, tmp_path), leave(boxes, tmp_path)
    assert first is not None and second is not None
    folder = tmp_path / "voicemail" / "1001"
    changes.clear()
    assert boxes.delete("1001", "msg0000.wav")
    assert not (folder / "msg0000.wav").exists()
    assert boxes.messages("1001") == [second]
    assert not boxes.delete("1001", "msg0000.wav")
    assert not boxes.delete("1002", "msg0001.wav")  # another mailbox's name
    third = leave(boxes, tmp_path)
    assert third is not None and third.file == "msg0002.wav"  # no name used again
    assert boxes.delete_all("1001") == 2
    assert boxes.messages("1001") == [] and sorted(p.name for p in folder.iterdir()) == []
    assert boxes.delete_all("1001") == 0
    assert changes == ["1001", "1001", "1001"]
    fresh = leave(boxes, tmp_path)
    assert fresh is not None and fresh.file == "msg0000.wav"  # an empty mailbox starts over


def test_a_full_mailbox_refuses_and_deletes_the_recording(boxes: Mailboxes,
                                                          tmp_path: Path) -> None:
    for _ in range(3):
        assert leave(boxes, tmp_path) is not None
    recorded = write_wav(tmp_path / "late.wav")
    assert boxes.deposit("1001", "1002", recorded, 4) is None
    assert not recorded.exists()
    assert len(boxes.messages("1001")) == 3
    assert leave(boxes, tmp_path, "1002") is not None  # each mailbox has its own limit


def test_a_vanished_file_drops_its_message(boxes: Mailboxes, changes: list[str], store: Store,
                                           tmp_path: Path) -> None:
    leave(boxes, tmp_path)
    kept = leave(boxes, tmp_path)
    (tmp_path / "voicemail" / "1001" / "msg0000.wav").unlink()
    changes.clear()
    assert boxes.messages("1001") == [kept]
    assert changes == ["1001"]
    assert store.voicemail_list("1001") == [kept]  # the row went too
    assert boxes.path_of("1001", "msg0000.wav") is None
    assert not boxes.delete("1001", "msg0000.wav")


def test_a_stray_file_keeps_its_number(boxes: Mailboxes, tmp_path: Path) -> None:
    folder = tmp_path / "voicemail" / "1001"
    folder.mkdir(parents=True)
    write_wav(folder / "msg0004.wav")  # left by a crash before its row was written
    message = leave(boxes, tmp_path)
    assert message is not None and message.file == "msg0005.wav"


def test_after_msg9999_the_lowest_free_number(boxes: Mailboxes, tmp_path: Path) -> None:
    folder = tmp_path / "voicemail" / "1001"
    folder.mkdir(parents=True)
    write_wav(folder / "msg9999.wav")
    write_wav(folder / "msg0000.wav")
    message = leave(boxes, tmp_path)
    assert message is not None and message.file == "msg0001.wav"


def test_path_of_only_names_a_message_of_that_mailbox(boxes: Mailboxes,
                                                      tmp_path: Path) -> None:
    leave(boxes, tmp_path)
    folder = tmp_path / "voicemail" / "1001"
    assert boxes.path_of("1001", "msg0000.wav") == folder / "msg0000.wav"
    write_wav(folder / "unlisted.wav")
    write_wav(tmp_path / "voicemail" / "x")
    for mailbox, file in [("1001", "unlisted.wav"), ("1001", "../x"), ("1001", "a/b"),
                          ("1001", ".."), ("1001", ""), ("..", "x"), ("1001/..", "x"),
                          ("1002", "msg0000.wav"), ("1001", "msg0000.wav/")]:
        assert boxes.path_of(mailbox, file) is None, (mailbox, file)


def test_mailbox_names_that_are_paths_are_refused(boxes: Mailboxes, tmp_path: Path) -> None:
    recorded = write_wav(tmp_path / "recorded.wav")
    for mailbox in ("..", "../1001", "a/b", ""):
        with pytest.raises(ValueError):
            boxes.deposit(mailbox, "1002", recorded, 3)
    assert recorded.exists()
    assert boxes.messages("..") == [] and boxes.greeting("..") is None


def test_greeting(boxes: Mailboxes, tmp_path: Path) -> None:
    assert boxes.greeting("1001") is None
    first = write_wav(tmp_path / "greeting-1.wav", level=10)
    saved = boxes.save_greeting("1001", first)
    assert saved == tmp_path / "voicemail" / "1001" / "greeting.wav"
    assert boxes.greeting("1001") == saved and not first.exists()
    second = write_wav(tmp_path / "greeting-2.wav", level=20)
    audio = second.read_bytes()
    assert boxes.save_greeting("1001", second) == saved
    assert saved.read_bytes() == audio
    assert boxes.messages("1001") == []  # a greeting is no message
    message = leave(boxes, tmp_path)
    assert message is not None and message.file == "msg0000.wav"


def test_messages_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "ippbx.sqlite3"
    store = Store(path)
    boxes = Mailboxes(tmp_path / "voicemail", store, clock=Clock())
    message = leave(boxes, tmp_path)
    assert message is not None
    boxes.mark_heard("1001", message.file)
    store.close()
    again = Store(path)
    try:
        boxes = Mailboxes(tmp_path / "voicemail", again)
        assert boxes.messages("1001") == [Message("1001", "msg0000.wav", "1002",
                                                  message.received_at, 7, True)]
        assert boxes.counts("1001") == (0, 1)
    finally:
        again.close()
