"""Local Kubernetes v1.34 control plane + process-based node agent for tests.

See devcluster/README.md.  ``python -m devcluster`` runs one in the
foreground; tests use :func:`devcluster.cluster.temp_cluster`.
"""
