"""Generated code is current; the v2 proto keeps the published names and field numbers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GEN = ROOT / "reuse" / "grpc" / "_proto"


def _normalise(text: str) -> str:
    # Tool versions differ between machines; the generated content must not.
    text = re.sub(r"# Protobuf Python Version: .*", "", text)
    text = re.sub(r"_runtime_version\.ValidateProtobufRuntimeVersion\([^)]*\)", "", text)
    return re.sub(r"GRPC_GENERATED_VERSION = '[^']*'", "", text)


def test_generated_code_is_current(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    fresh = tmp_path / "reuse" / "grpc" / "_proto"
    names = sorted(p.name for p in fresh.iterdir() if p.suffix in (".py", ".pyi"))
    assert names == sorted(p.name for p in GEN.iterdir() if p.suffix in (".py", ".pyi"))
    stale = [n for n in names if _normalise((fresh / n).read_text()) != _normalise((GEN / n).read_text())]
    assert not stale, f"generated code is stale, run `make proto`: {stale}"


@pytest.mark.parametrize(("message", "field", "number"), [
    ("InferParameter", "bool_param", 1), ("InferParameter", "int64_param", 2),
    ("InferParameter", "string_param", 3),
    ("InferParameter", "double_param", 4), ("InferParameter", "uint64_param", 5),
    ("InferTensorContents", "bool_contents", 1), ("InferTensorContents", "int_contents", 2),
    ("InferTensorContents", "int64_contents", 3), ("InferTensorContents", "uint_contents", 4),
    ("InferTensorContents", "uint64_contents", 5), ("InferTensorContents", "fp32_contents", 6),
    ("InferTensorContents", "fp64_contents", 7), ("InferTensorContents", "bytes_contents", 8),
    ("ModelInferRequest", "raw_input_contents", 7), ("ModelInferRequest", "inputs", 5),
    ("ModelInferRequest", "outputs", 6), ("ModelInferResponse", "raw_output_contents", 6),
    ("ModelInferResponse", "outputs", 5), ("ModelMetadataResponse", "outputs", 5),
])
def test_v2_field_numbers(message, field, number):
    from reuse.grpc._proto import inference_pb2

    desc = inference_pb2.DESCRIPTOR.message_types_by_name[message]
    assert desc.full_name == f"inference.{message}"
    assert desc.fields_by_name[field].number == number


def test_v2_service_methods():
    from reuse.grpc._proto import inference_pb2

    svc = inference_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert svc.full_name == "inference.GRPCInferenceService"
    assert {m.name for m in svc.methods} == {"ServerLive", "ServerReady", "ModelReady", "ServerMetadata",
                                             "ModelMetadata", "ModelInfer"}


def test_core_does_not_import_grpc():
    code = ("import sys; import reuse.service, reuse.serving.engine, reuse.jobs, reuse.store.uploads, "
            "reuse.store.describe; bad = [m for m in sys.modules if m == 'grpc' or m.startswith(('grpc.', "
            "'reuse.grpc', 'click'))]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
