"""The forward-pass runtime of each served version: ONNX Runtime or Keras, chosen and shown with a reason.

Real models in a real store, served by a real gRPC server on 127.0.0.1; the ONNX files in the store's
private folder are the real exports.
"""

from __future__ import annotations

import shutil

import grpc
import keras
import numpy as np
from click.testing import CliRunner
from conftest import make_mlp, needs_onnx_export
from grpc_support import infer_request, rpc_error, stubs

from reuse.cli import cli
from reuse.grpc._proto import inference_pb2 as ipb
from reuse.grpc._proto import reuse_v1_pb2 as pb
from reuse.grpc.server import start_in_thread
from reuse.service import Service
from reuse.serving.engine import ServingOptions


def onnx_files(service: Service) -> list[str]:
    root = service.store_root / ".reuse" / "onnx"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def serve(root, runtime: str):
    service = Service(root)
    service.configure_serving(ServingOptions(max_batch_size=32, max_batch_delay_ms=1.0, runtime=runtime))
    return service, start_in_thread(service)


def _out(resp: ipb.ModelInferResponse) -> np.ndarray:
    t = resp.outputs[0]
    dtype = {"FP32": np.float32, "INT32": np.int32, "INT64": np.int64}[t.datatype]
    return np.frombuffer(resp.raw_output_contents[0], dtype).reshape(tuple(t.shape))


CASES = [("mlp", "features", (8,), "onnx"), ("conv", "image", (8, 8, 1), "onnx"),
         ("binned", "features", (8,), "keras")]


@needs_onnx_export
def test_auto_picks_per_version_and_answers_equal_keras_over_grpc(mixed_store):
    auto, auto_server = serve(mixed_store, "auto")
    keras_only, keras_server = serve(mixed_store, "keras")
    ch1, inf_auto, api_auto = stubs(auto_server.target)
    ch2, inf_keras, _ = stubs(keras_server.target)
    rng = np.random.default_rng(3)
    try:
        for name, input_name, row, runtime in CASES:
            for rows in (1, 7):
                x = rng.normal(size=(rows, *row)).astype("float32")
                a = _out(inf_auto.ModelInfer(infer_request(x, model=name, name=input_name)))
                k = _out(inf_keras.ModelInfer(infer_request(x, model=name, name=input_name)))
                assert a.dtype == k.dtype and a.shape == k.shape
                np.testing.assert_allclose(a, k, rtol=1e-5, atol=1e-5)
            params = inf_auto.ModelMetadata(ipb.ModelMetadataRequest(name=name)).parameters
            assert params["runtime"].string_param == runtime, (name, params["runtime_reason"].string_param)
        stats = {m.model: m for m in api_auto.GetServerStats(pb.GetServerStatsRequest()).models}
        assert stats["mlp:1"].runtime == "onnx"
        assert "matches Keras within 1e-05" in stats["mlp:1"].runtime_reason
        assert stats["binned:1"].runtime == "keras"
        assert stats["binned:1"].runtime_reason == ("ONNX export failed: the model uses ops that have "
                                                    "no ONNX equivalent: Bucketize")
        keras_params = inf_keras.ModelMetadata(ipb.ModelMetadataRequest(name="mlp")).parameters
        assert keras_params["runtime"].string_param == "keras"
        assert keras_params["runtime_reason"].string_param == "forced by --runtime keras"
    finally:
        ch1.close()
        ch2.close()
        auto_server.stop()
        keras_server.stop()
    # One ONNX file per exported version, in the store's private folder, nothing left half-written.
    assert [f.split("-")[0] for f in onnx_files(auto)] == ["conv/v1", "mlp/v1"]


@needs_onnx_export
def test_forced_onnx_refuses_a_model_that_cannot_run_there(mixed_store):
    service, server = serve(mixed_store, "onnx")
    channel, inference, _ = stubs(server.target)
    try:
        err = rpc_error(inference.ModelInfer, infer_request(np.zeros((1, 8), np.float32), model="binned"))
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert err.details() == ("model binned:1 cannot run on ONNX Runtime (--runtime onnx): ONNX export "
                                 "failed: the model uses ops that have no ONNX equivalent: Bucketize")
        ok = inference.ModelInfer(infer_request(np.zeros((2, 8), np.float32), model="mlp"))
        assert list(ok.outputs[0].shape) == [2, 3]
    finally:
        channel.close()
        server.stop()


@needs_onnx_export
def test_onnx_cache_follows_the_version_file(tmp_path):
    """Rebuilt when missing; a version file replaced on disk gets a new file (the old one is removed and
    never served); deleting the version removes its files."""
    service = Service(tmp_path / "store")
    service.register_model(make_mlp(seed=0), "mlp")
    x = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")

    def fresh_answer() -> tuple[np.ndarray, str]:
        s = Service(tmp_path / "store")
        s.configure_serving(ServingOptions(runtime="auto"))
        out = s.infer("mlp:1", x).outputs[0]
        choice = s.serving_runtime("mlp:1")
        s.close()
        return out, choice.onnx_file

    out1, file1 = fresh_answer()
    assert onnx_files(service) == [file1.split("/onnx/")[1]]
    (service.store_root / ".reuse" / "onnx" / file1.split("/onnx/")[1]).unlink()
    _, rebuilt = fresh_answer()
    assert rebuilt == file1 and onnx_files(service) == [file1.split("/onnx/")[1]]

    other = Service(tmp_path / "other")
    replacement = make_mlp(seed=5)
    other.register_model(replacement, "mlp")
    shutil.copyfile(other.store.path("mlp:1"), service.store.path("mlp:1"))
    out2, file2 = fresh_answer()
    assert file2 != file1 and onnx_files(service) == [file2.split("/onnx/")[1]]
    np.testing.assert_allclose(out2, replacement.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(out1, out2)

    s = Service(tmp_path / "store")
    s.configure_serving(ServingOptions(runtime="auto"))
    s.infer("mlp:1", x)
    s.delete_version("mlp:1")
    assert onnx_files(service) == []


def test_without_the_extra_auto_serves_keras_and_forced_onnx_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("REUSE_ASSUME_MISSING", "onnxruntime")  # as an install without it
    service = Service(tmp_path / "store")
    service.register_model(make_mlp(), "mlp")
    service.configure_serving(ServingOptions(runtime="auto"))
    service.infer("mlp", np.zeros((1, 8), np.float32))
    # The converter is the backend's: tf2onnx (a core dependency) on TensorFlow, jax2onnx on JAX.
    tf = keras.backend.backend() == "tensorflow"
    missing = "onnxruntime" if tf else "onnxruntime, jax2onnx"
    hint = "pip install onnx onnxruntime " + ("tf2onnx" if tf else "jax2onnx")
    assert service.serving_runtime("mlp").reason == f"{missing} not installed ({hint})"
    result = CliRunner().invoke(cli, ["serve", "--store", str(tmp_path / "store"), "--runtime", "onnx"])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == f"Error: --runtime onnx needs {missing} (not installed): {hint}"


def test_serve_refuses_an_unknown_runtime(tmp_path):
    result = CliRunner().invoke(cli, ["serve", "--store", str(tmp_path), "--runtime", "tensorrt"])
    assert result.exit_code == 2
    assert "Invalid value for '--runtime': 'tensorrt' is not one of 'auto', 'onnx', 'keras'." in result.output


@needs_onnx_export
def test_a_request_that_does_not_fit_is_refused_before_any_onnx_file_is_made(tmp_path):
    """Validate, then run: `reuse infer` with the wrong number of columns names the problem and leaves no
    ONNX conversion behind; a right request then converts and answers."""
    store = tmp_path / "store"
    Service(store).register_model(make_mlp(), "mlp")  # 8 features
    np.save(tmp_path / "wrong.npy", np.zeros((2, 5), np.float32))
    bad = CliRunner().invoke(cli,
                             ["infer", "mlp", "--input", str(tmp_path / "wrong.npy"), "--store", str(store)])
    assert bad.exit_code == 1
    assert bad.output.splitlines()[-1].startswith("Error: input 'features': shape [2, 5], expected [-1, 8]")
    onnx_dir = store / ".reuse" / "onnx"
    assert not onnx_dir.exists() or not list(onnx_dir.rglob("*.onnx"))
    np.save(tmp_path / "right.npy", np.zeros((2, 8), np.float32))
    ok = CliRunner().invoke(cli,
                            ["infer", "mlp", "--input", str(tmp_path / "right.npy"), "--store", str(store)])
    assert ok.exit_code == 0, ok.output
    assert list(onnx_dir.rglob("*.onnx"))
