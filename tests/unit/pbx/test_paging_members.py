"""Which members a page reaches (`pageable`): registered, idle, not on do-not-disturb,
not the caller, in the group's order, each once."""

from __future__ import annotations

from ippbx.pbx.paging import pageable


def reach(members: list[str], caller: str = "", registered: set[str] | None = None,
          busy: frozenset[str] = frozenset(), dnd: frozenset[str] = frozenset()) -> list[str]:
    online = set(members) if registered is None else registered
    return pageable(members, caller, registered=online.__contains__,
                    busy=busy.__contains__, dnd=dnd.__contains__)


def test_every_idle_registered_member_in_the_groups_order() -> None:
    assert reach(["1003", "1001", "1002"]) == ["1003", "1001", "1002"]


def test_the_caller_busy_unregistered_and_dnd_members_are_left_out() -> None:
    members = ["1001", "1002", "1003", "1004", "1005"]
    assert reach(members, caller="1001", registered={"1001", "1002", "1003", "1004"},
                 busy=frozenset({"1003"}), dnd=frozenset({"1004"})) == ["1002"]


def test_a_member_listed_twice_is_paged_once() -> None:
    assert reach(["1002", "1003", "1002"]) == ["1002", "1003"]


def test_nobody_to_page() -> None:
    assert reach(["1001"], caller="1001") == []
    assert reach(["1002", "1003"], registered=set()) == []
    assert reach(["1002"], busy=frozenset({"1002"})) == []
