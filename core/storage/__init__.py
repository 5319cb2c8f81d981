"""Artifact storage: input archives, results and archived logs.

One interface (:class:`core.storage.base.ObjectStore`) with a backend per
``RESULT_STORAGE_TYPE``; :func:`core.storage.factory.build_store` picks it.
"""
from core.storage.base import ObjectInfo, ObjectNotFound, ObjectStore, StoreUnavailable

__all__ = ["ObjectInfo", "ObjectNotFound", "ObjectStore", "StoreUnavailable"]
