"""`reuse export` to other engines: ONNX, SavedModel, a Triton model repository and a KServe manifest.

Every file is checked for real: the ONNX file runs in ONNX Runtime and matches Keras, the SavedModel is
loaded back by TensorFlow, config.pbtxt parses with the ModelConfig protobuf of tritonclient (in its own
environment, .venv-triton), and the manifest is YAML that KServe's InferenceService schema expects.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from conftest import make_conv, needs_onnx_export

from reuse.cli import cli
from reuse.errors import AlreadyExists, FailedPrecondition, InvalidInput
from reuse.export import onnx_file
from reuse.service import Service

ROOT = Path(__file__).resolve().parents[2]
TRITON_VENV = Path(os.environ.get("REUSE_TRITON_VENV", ROOT / ".venv-triton"))


def run(*args, code: int = 0):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=code != 0)
    assert result.exit_code == code, (result.output, result.exception)
    return result


def error_line(result) -> str:
    return result.stderr.strip().splitlines()[-1]


def store_files(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".reuse" not in p.parts
    )


def keras_answer(root: Path, ref: str, x: np.ndarray) -> np.ndarray:
    return np.asarray(Service(root).store.load(ref)(x, training=False))


@pytest.mark.parametrize(("ref", "shape"), [("mlp", (8,)), ("conv", (8, 8, 1))])
@needs_onnx_export
def test_onnx_export_runs_in_onnxruntime_and_matches_keras(mixed_store, tmp_path, ref, shape):
    out = tmp_path / f"{ref}.onnx"
    line = run("export", ref, out, "--store", mixed_store).output
    assert line.startswith(f"Exported {ref}:1 to {out} (onnx, matches Keras within ")
    x = np.random.default_rng(3).standard_normal((7, *shape)).astype(np.float32)
    session = onnx_file.open_session(out)
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, keras_answer(mixed_store, ref, x), atol=1e-5)
    sig = Service(mixed_store).model_signature(ref)  # the names a KServe v2 client of `reuse serve` uses
    assert [i.name for i in session.get_inputs()] == [s.name for s in sig.inputs]
    assert [o.name for o in session.get_outputs()] == [s.name for s in sig.outputs]
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temp file left beside it


def test_savedmodel_and_keras_exports_load_back(mixed_store, tmp_path):
    import tensorflow as tf

    out = tmp_path / "mlp_sm"
    assert "(savedmodel, matches Keras within" in run("export", "mlp", out, "--format", "savedmodel",
                                                      "--store", mixed_store).output
    x = np.random.default_rng(4).standard_normal((5, 8)).astype(np.float32)
    loaded = tf.saved_model.load(str(out))
    got = np.asarray(loaded.serve(tf.constant(x)))
    np.testing.assert_allclose(got, keras_answer(mixed_store, "mlp", x), atol=1e-5)
    # the default stays a .keras file, with the line it always printed
    native = tmp_path / "mlp.keras"
    assert run("export", "mlp", native, "--store", mixed_store).output == f"Exported mlp:1 to {native}\n"
    np.testing.assert_allclose(np.asarray(keras.saving.load_model(native)(x)),
                               keras_answer(mixed_store, "mlp", x), atol=1e-6)
    # --force swaps a whole SavedModel folder in; without it the old one stays
    r = run("export", "mlp", out, "--format", "savedmodel", "--store", mixed_store, code=1)
    assert error_line(r) == f"Error: {out} exists; pass overwrite (--force) to replace it"
    run("export", "mlp", out, "--format", "savedmodel", "--force", "--store", mixed_store)
    assert (out / "saved_model.pb").is_file() and sorted(p.name for p in tmp_path.iterdir()) == [
        "mlp.keras",
        "mlp_sm",
    ]


def _parse_with_tritonclient(config: Path) -> dict:
    py = TRITON_VENV / "bin" / "python"
    if not (TRITON_VENV / ".installed").exists() or not py.exists():
        pytest.skip(f"no tritonclient environment at {TRITON_VENV} (make triton-venv builds it)")
    done = subprocess.run([str(py), str(ROOT / "tests" / "triton_config_check.py"), str(config)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@needs_onnx_export
def test_triton_repository_and_kserve_manifest(mixed_store, tmp_path):
    repo = tmp_path / "repo"
    r = run("export", "conv", "--triton-repo", repo, "--max-batch-size", "16", "--max-batch-delay-ms", "0.5",
            "--kserve", "s3://bucket/models", "--store", mixed_store)
    config_path, model_path = repo / "conv" / "config.pbtxt", repo / "conv" / "1" / "model.onnx"
    assert r.stderr.startswith(f"Exported conv:1 to the Triton repository {repo}: {config_path}, "
                               f"{model_path}")
    manifest = yaml.safe_load(r.stdout)
    assert manifest["kind"] == "InferenceService" and manifest["metadata"]["name"] == "conv"
    spec = manifest["spec"]["predictor"]["model"]
    assert spec["storageUri"] == "s3://bucket/models" and spec["modelFormat"]["name"] == "triton"
    assert spec["protocolVersion"] == "v2"

    config = _parse_with_tritonclient(config_path)
    assert config["name"] == "conv" and config["backend"] == "onnxruntime" and config["max_batch_size"] == 16
    assert config["dynamic_batching"] == {"max_queue_delay_microseconds": "500"}
    assert config["input"] == [{"name": "image", "data_type": "TYPE_FP32", "dims": ["8", "8", "1"]}]
    assert config["output"] == [{"name": "probs", "data_type": "TYPE_FP32", "dims": ["3"]}]
    session = onnx_file.open_session(model_path)
    x = np.random.default_rng(5).standard_normal((4, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(session.run(["probs"], {"image": x})[0], keras_answer(mixed_store, "conv", x),
                               atol=1e-5)

    # a second version goes beside the first; the same version again needs --force
    Service(mixed_store).register_model(make_conv(seed=1), "conv")
    run("export", "conv:2", "--triton-repo", repo, "--store", mixed_store)
    assert sorted(p.name for p in (repo / "conv").iterdir()) == ["1", "2", "config.pbtxt"]
    r = run("export", "conv:1", "--triton-repo", repo, "--store", mixed_store, code=1)
    assert error_line(r) == f"Error: {model_path} exists; pass overwrite (--force) to replace it"
    Service(mixed_store).delete_version("conv:2")


@needs_onnx_export
def test_a_model_onnx_cannot_express_is_refused_and_nothing_is_written(mixed_store, tmp_path):
    svc = Service(mixed_store)
    with pytest.raises(FailedPrecondition, match="no ONNX equivalent: Bucketize"):
        svc.export_model("binned", tmp_path / "b.onnx")
    with pytest.raises(FailedPrecondition, match="no ONNX equivalent"):
        svc.export_triton("binned", tmp_path / "repo")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["repo"]  # no file, no empty version folder
    with pytest.raises(InvalidInput, match="export format 'h5'"):
        svc.export_model("mlp", tmp_path / "m.h5", format="h5")
    (tmp_path / "m.onnx").write_text("mine")
    with pytest.raises(AlreadyExists):
        svc.export_model("mlp", tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").read_text() == "mine"


def test_cli_refuses_bad_combinations_with_one_line(mixed_store, tmp_path):
    before = store_files(mixed_store)
    cases = [
        (["export", "mlp"], "Error: give OUT or --triton-repo DIR (one of them)"),
        (["export", "mlp", tmp_path / "a.onnx", "--triton-repo", tmp_path / "r"],
         "Error: give OUT or --triton-repo DIR (one of them)"),
        (["export", "mlp", tmp_path / "a.onnx", "--kserve", "s3://b/m"],
         "Error: --kserve describes a Triton repository; add --triton-repo DIR"),
        (["export", "mlp", "--triton-repo", tmp_path / "r", "--format", "savedmodel"],
         "Error: a Triton repository holds ONNX files; --format savedmodel does not apply to --triton-repo"),
        (["export", "mlp", tmp_path / "a.keras", "--format", "onnx"],
         f"Error: an ONNX export path must end in .onnx; received '{tmp_path / 'a.keras'}'"),
        (["export", "mlp", "--triton-repo", tmp_path / "r", "--kserve", "not a uri"],
         "Error: storage URI 'not a uri': expected a URI of the folder holding the Triton repository, "
         "such as s3://bucket/models or pvc://claim/models"),
        (["export", "nope:1", tmp_path / "a.onnx"], None),
    ]
    for args, line in cases:
        r = run(*args, "--store", mixed_store, code=1)
        got = error_line(r)
        assert got.startswith("Error: ") and (line is None or got == line), (args, got)
    r = run("export", "mlp", tmp_path / "x", "--format", "tflite", "--store", mixed_store, code=2)
    assert "'tflite' is not one of 'keras', 'onnx', 'savedmodel'" in r.stderr
    assert not any(tmp_path.iterdir()) and store_files(mixed_store) == before
