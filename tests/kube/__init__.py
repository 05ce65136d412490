"""Tests on a real Kubernetes control plane (etcd + kube-apiserver +
kube-controller-manager built from Debian's sources; see tests/support/kube.py)."""
