"""Deployment resources past one machine: Kubernetes manifests rendered from collector-config/,
and values for Grafana's distributed backend charts (docs/scaling.md)."""
