"""Files made from a stored version for other engines: ONNX, a SavedModel, a Keras file, a Triton model
repository and a KServe manifest. The store stays the one source of truth; these are derived copies."""
