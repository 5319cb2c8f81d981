"""PostgreSQL adapter: tables, engine, and the repository of tenants and jobs."""
