"""Dramatiq actors and the sweeper: the service's background processes."""
