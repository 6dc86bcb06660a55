"""Serving core: compiled forward passes, dynamic batching, the model cache, the inference engine.

Transport-free: the gRPC adapter (:mod:`reuse.grpc`) and the facade (:mod:`reuse.service`) call it.
"""
