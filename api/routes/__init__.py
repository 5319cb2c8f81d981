"""One router per resource: auth, jobs, tenants, admin, health."""
