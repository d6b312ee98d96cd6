"""The sidecar's serving side: core scheduler loop, gRPC and HTTP surfaces, metrics, traces."""
