"""Use cases: what an HTTP handler or an actor asks the service to do.

Each function takes a :class:`core.services.context.Context` (the adapters)
and plain arguments, and does one thing in one transaction where it can.
"""
