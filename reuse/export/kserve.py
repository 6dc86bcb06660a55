"""A KServe InferenceService manifest that serves a Triton model repository (see :mod:`.triton`) with
the v2 protocol over gRPC (Triton's runtime in KServe: ``kserve-tritonserver``, gRPC port 9000)."""

from __future__ import annotations

import re

import yaml

from reuse.errors import InvalidInput
from reuse.text import echo

_URI = re.compile(r"[a-z][a-z0-9+.-]*://[^\s]+")


def service_name(model: str) -> str:
    """A Kubernetes resource name (DNS-1035 label) for a model name: . and _ become -, a leading
    digit gets an ``m-`` prefix, at most 63 characters."""
    name = re.sub(r"[._]+", "-", model).strip("-")
    if not name or not name[0].isalpha():
        name = f"m-{name}"
    return name[:63].rstrip("-")


def inference_service(model: str, storage_uri: str) -> str:
    """The manifest as YAML text.

    Raises:
        InvalidInput: ``storage_uri`` is not a URI (``s3://...``, ``gs://...``, ``pvc://...``).
    """
    if not _URI.fullmatch(storage_uri):
        raise InvalidInput(f"storage URI {echo(storage_uri)}: expected a URI of the folder holding "
                           "the Triton repository, such as s3://bucket/models or pvc://claim/models")
    manifest = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": service_name(model)},
        "spec": {"predictor": {"model": {
            "modelFormat": {"name": "triton"},
            "runtime": "kserve-tritonserver",
            "protocolVersion": "v2",
            "storageUri": storage_uri,
            "ports": [{"name": "h2c", "protocol": "TCP", "containerPort": 9000}],
        }}},
    }
    return yaml.safe_dump(manifest, sort_keys=False)
