"""gRPC adapter: KServe v2 inference and the reuse.v1 management service over the service facade."""
