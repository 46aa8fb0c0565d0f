"""Call reports (webhooks): built from the PBX's domain events, stored, delivered.

`build` turns events into reports and renders them (OpenVox flat / Yeastar `call:[…]`),
`delivery` drains the SQLite outbox per session, `service` ties both to the registry.
"""

from ippbx.api.reports.build import Action, Form, Report, ReportBuilder, render
from ippbx.api.reports.delivery import Delivery, destination
from ippbx.api.reports.service import ReportService, form_of

__all__ = [
    "Action", "Delivery", "Form", "Report", "ReportBuilder", "ReportService", "destination",
    "form_of", "render",
]
