"""KPIs of a run, parsed from SUMO's ``--statistic-output`` file."""
from __future__ import annotations

import xml.etree.ElementTree as ET


def parse_statistics(xml_bytes: bytes) -> dict | None:
    """vehicles loaded/arrived and mean travel time, waiting time and time loss (seconds)."""
    try:
        root = ET.fromstring(xml_bytes)
    except ET.ParseError:
        return None
    vehicles = root.find("vehicles")
    trips = root.find("vehicleTripStatistics")
    teleports = root.find("teleports")
    kpis: dict = {}
    if vehicles is not None:
        kpis["vehicles_loaded"] = _int(vehicles.get("loaded"))
        kpis["vehicles_inserted"] = _int(vehicles.get("inserted"))
    if trips is not None:
        kpis["vehicles_arrived"] = _int(trips.get("count"))
        kpis["mean_travel_time"] = _float(trips.get("duration"))
        kpis["mean_waiting_time"] = _float(trips.get("waitingTime"))
        kpis["mean_time_loss"] = _float(trips.get("timeLoss"))
        kpis["mean_route_length"] = _float(trips.get("routeLength"))
    if teleports is not None:
        kpis["teleports"] = _int(teleports.get("total"))
    return kpis or None


def _int(value: str | None) -> int | None:
    return int(float(value)) if value not in (None, "") else None


def _float(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None
