"""The LTR sidecar: predictor, scheduling, engine client and the gRPC/HTTP surfaces.

Imports point one way: server/bench -> scheduling -> predictor.
"""
