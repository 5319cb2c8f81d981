"""Local stand-ins for the service's external systems: embedded PostgreSQL/Redis and storage emulators."""
