"""A real Kubernetes control plane and a test node agent for the `cluster` test tier (see cluster.py)."""
