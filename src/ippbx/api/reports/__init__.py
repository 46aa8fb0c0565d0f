"""Call reports (webhooks): built from the PBX's domain events, stored, delivered.

`build` turns events into reports and renders them (OpenVox flat / Yeastar `call:[…]`),
`delivery` drains the SQLite outbox per destination, `service` ties both to the registry.
"""

from ippbx.api.reports.build import Action, Form, Report, ReportBuilder, render
from ippbx.api.reports.delivery import Delivery, destination, form_of, route_of
from ippbx.api.reports.service import ReportService

__all__ = [
    "Action", "Delivery", "Form", "Report", "ReportBuilder", "ReportService", "destination",
    "form_of", "render", "route_of",
]
