"""The Kubernetes executor: manifests (pure), the executor, status translation and the watcher."""
from core.executors.kubernetes.executor import KubernetesExecutor

__all__ = ["KubernetesExecutor"]
