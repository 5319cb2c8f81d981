"""The job domain as plain Python: states, status events, admission, tenants.

Nothing in this package does I/O; it is unit-tested with plain values.
"""
