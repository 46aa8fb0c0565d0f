"""The two report forms: OpenVox's flat one and Yeastar's `call:[…]` one (a module of its
own so the report courier can know them without the report builder's imports)."""

from enum import StrEnum


class Form(StrEnum):
    """The two report shapes."""

    OPENVOX = "openvox"
    YEASTAR = "yeastar"
