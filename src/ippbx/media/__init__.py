"""The media plane: ippbx's control of rtpengine, the media engine that anchors call audio.

`bencode` is the wire encoding of rtpengine's ng protocol, `rtpengine` the ng client
(sans-IO codec plus the asyncio `NgClient`), `engine` runs and supervises ippbx's own
rtpengine process (or pings external ones) and receives its DTMF events, `recordings`
turns rtpengine's per-call pcaps into WAVs, `moh` is the built-in music on hold,
`janus` runs and drives the conference mixer (Janus AudioBridge). Nothing here knows
about SIP calls; the PBX drives it by call-id and tags (and the mixer by room and party).
"""
