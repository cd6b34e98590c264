"""Times as the lab reads them: in its time zone (``LAB_TIMEZONE``), always labelled."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask import Flask, current_app


def lab_time(moment: datetime, zone: str | None = None) -> str:
    """``moment`` as "YYYY-MM-DD HH:MM" in the lab's zone, with the zone's abbreviation and name."""
    name = zone or str(current_app.config.get("LAB_TIMEZONE") or "UTC")
    local = moment.astimezone(ZoneInfo(name))
    abbreviation = local.tzname() or ""
    label = name if abbreviation in ("", name) else f"{abbreviation}, {name}"
    return f"{local:%Y-%m-%d %H:%M} ({label})" if name != "UTC" else f"{local:%Y-%m-%d %H:%M} UTC"


def init_app(app: Flask) -> None:
    app.jinja_env.filters["lab_time"] = lab_time
