"""``sumo-k8``: the command-line client of the API (typer + rich)."""
