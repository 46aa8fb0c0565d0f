"""ippbx: an IP-PBX with an OpenVox UC / Yeastar S-Series compatible HTTP API."""

__version__ = "0.1.0"
