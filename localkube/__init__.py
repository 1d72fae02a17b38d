"""A real, local Kubernetes control plane (etcd + kube-apiserver) for tests and the demo."""

from localkube.binaries import ensure_binaries
from localkube.controlplane import ControlPlane, ControlPlaneError

__all__ = ["ControlPlane", "ControlPlaneError", "ensure_binaries"]
