from ippbx.pbx.sdp import direction, is_hold, with_direction

OFFER = (b"v=0\r\no=alice 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n"
         b"c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


def test_hold_offer_sets_sendonly_and_raises_version() -> None:
    held = with_direction(OFFER, "sendonly")
    assert b"o=alice 53655765 2353687638 IN IP4" in held
    assert held.endswith(b"a=rtpmap:0 PCMU/8000\r\na=sendonly\r\n")
    assert is_hold(held) and direction(held) == "sendonly"


def test_resume_replaces_the_direction() -> None:
    resumed = with_direction(with_direction(OFFER, "sendonly"), "sendrecv")
    assert b"a=sendonly" not in resumed and direction(resumed) == "sendrecv"
    assert not is_hold(resumed)


def test_each_media_section_gets_the_direction() -> None:
    two = OFFER + b"m=video 6002 RTP/AVP 96\r\na=sendrecv\r\n"
    held = with_direction(two, "inactive")
    sections = held.split(b"m=")
    assert all(s.count(b"a=inactive") == 1 for s in sections[1:])
    assert sections[0].count(b"a=inactive") == 0


def test_no_direction_means_sendrecv() -> None:
    assert direction(OFFER) == "sendrecv" and not is_hold(OFFER)
