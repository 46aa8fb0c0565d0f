"""Dialect router helpers and the id-list parsing of the call queries (no sockets)."""

from __future__ import annotations

import pytest

from ippbx.api.codec import Format
from ippbx.api.dialects import ENDPOINTS, OPENVOX, YEASTAR, split_path, token_from
from ippbx.api.endpoints.calls import parse_ids
from ippbx.api.errors import ApiError, Errno


def test_both_dialects_serve_the_endpoints() -> None:
    assert set(ENDPOINTS) >= {
        "login", "heartbeat", "logout", "outbound/query", "inbound/query", "deviceinfo/query"
    }
    assert not ENDPOINTS["login"].auth and ENDPOINTS["login"].body_required


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/api/v0.0.1/login", ("v0.0.1", "login")),
     ("/api/v1.1.0/outbound/query/", ("v1.1.0", "outbound/query")),
     ("/api/v0.0.1", ("v0.0.1", "")), ("/api/", ("", ""))],
)
def test_split_path(path: str, expected: tuple[str, str]) -> None:
    assert split_path(path) == expected


def test_format_choice() -> None:
    assert OPENVOX.format_for(None) is None
    assert OPENVOX.format_for(" ") is None
    assert OPENVOX.format_for("XML") is Format.XML
    assert OPENVOX.format_for("json") is Format.JSON
    assert YEASTAR.format_for("json") is Format.JSON
    for dialect, value, errno in [(OPENVOX, "yaml", Errno.BAD_PACKET),
                                  (YEASTAR, "xml", Errno.ONLY_JSON),
                                  (YEASTAR, "yaml", Errno.ONLY_JSON)]:
        with pytest.raises(ApiError) as info:
            dialect.format_for(value)
        assert info.value.errno == errno


def test_errno_mapping() -> None:
    assert OPENVOX.errno(Errno.BAD_CREDENTIALS) == 30003
    assert YEASTAR.errno(Errno.BAD_CREDENTIALS) == 20003
    assert OPENVOX.malformed == Errno.BAD_PACKET and YEASTAR.malformed == Errno.ONLY_JSON


def test_token_sources() -> None:
    assert token_from({"token": "abc"}, "Bearer other") == "abc"
    assert token_from({"access_token": "abc"}, None) == "abc"
    assert token_from({"token": ""}, "bearer  xyz ") == "xyz"
    assert token_from({}, "Basic xyz") is None
    assert token_from({}, "Bearer") is None
    assert token_from({}, None) is None


@pytest.mark.parametrize(
    ("value", "ids"),
    [(None, None), ("", None), ("  ", None), ("all", None), ("ALL", None), (",", None),
     ("1.2", ["1.2"]), (" 1.2 , 3.4,,5.60 ", ["1.2", "3.4", "5.60"]),
     ("3.4,1.2,3.4", ["3.4", "1.2"]), ("all,1.2", ["all", "1.2"])],
)
def test_parse_ids(value: str | None, ids: list[str] | None) -> None:
    assert parse_ids(value) == ids
