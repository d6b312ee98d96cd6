"""Engine side of the sidecar: the OpenAI-compatible streaming client and a tiny CPU test engine."""
