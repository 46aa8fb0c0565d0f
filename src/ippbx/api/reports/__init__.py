"""Call reports (webhooks): built from the PBX's domain events, stored, delivered.

`build` turns events into reports and renders them (OpenVox flat / Yeastar `call:[…]`),
`delivery` drains the SQLite outbox per destination, `service` ties both to the registry,
`courier` delivers in a process of its own. The names below are imported on first use,
so that the courier, a module of this package, starts without the rest of ippbx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ippbx.api.reports.build import Action, Report, ReportBuilder, render
    from ippbx.api.reports.delivery import Delivery, destination, form_of, route_of
    from ippbx.api.reports.form import Form
    from ippbx.api.reports.service import ReportService

_WHERE = {
    "Action": "build", "Report": "build", "ReportBuilder": "build", "render": "build",
    "Delivery": "delivery", "destination": "delivery", "form_of": "delivery",
    "route_of": "delivery", "Form": "form", "ReportService": "service",
}

__all__ = [
    "Action", "Delivery", "Form", "Report", "ReportBuilder", "ReportService", "destination",
    "form_of", "render", "route_of",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
