"""The REST API (FastAPI).  Handlers parse, call one use case in ``core.services``, render."""
