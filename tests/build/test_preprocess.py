"""The preprocessing stage of a build (``reuse build --preprocess``): the spec grammar, the reuse>Preprocess
layer, equivalence with keras.applications' own ``preprocess_input``, refusals, warnings, the plain-Keras
safe-mode load after ``import reuse.layers``, and the ONNX export."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_conv, make_mlp

from reuse.build import build_network
from reuse.cli import cli
from reuse.errors import InvalidInput
from reuse.preprocess_spec import check_channels, parse_preprocess
from reuse.service import Service

ROOT = Path(__file__).resolve().parents[2]
TF_OPS = [["div", [127.5]], ["add", [-1.0]]]
CAFFE_OPS = [["bgr", []], ["sub", [103.939, 116.779, 123.68]]]
TORCH_OPS = [["div", [255.0]], ["sub", [0.485, 0.456, 0.406]], ["div", [0.229, 0.224, 0.225]]]

PARSE_CASES = [
    ("tf", "tf", TF_OPS),
    ("caffe", "caffe", CAFFE_OPS),
    ("torch", "torch", TORCH_OPS),
    ("none", "none", []),
    ("mobilenet_v2", "mobilenet_v2", TF_OPS),
    ("MobileNetV2", "mobilenet_v2", TF_OPS),
    ("resnet50", "resnet50", CAFFE_OPS),
    ("ResNet50V2", "resnet50_v2", TF_OPS),
    ("vgg16", "vgg16", CAFFE_OPS),
    ("densenet", "densenet", TORCH_OPS),
    ("xception", "xception", TF_OPS),
    ("nasnet", "nasnet", TF_OPS),
    ("efficientnet", "efficientnet", []),
    ("EfficientNetV2B0", "efficientnet_v2", []),
    ("convnext", "convnext", []),
    ("mobilenet_v3", "mobilenet_v3", []),
    ("rescale:1/255", "rescale:1/255", [["div", [255.0]]]),
    ("rescale:0.5:-1", "rescale:0.5:-1", [["mul", [0.5]], ["add", [-1.0]]]),
    ("rescale:1", "rescale:1", []),
    ("normalize:0.5:0.25", "normalize:0.5:0.25", [["sub", [0.5]], ["div", [0.25]]]),
    ("normalize:1,2,3:4,5,6", "normalize:1,2,3:4,5,6", [["sub", [1.0, 2.0, 3.0]], ["div", [4.0, 5.0, 6.0]]]),
    ("bgr+rescale:1/255", "bgr+rescale:1/255", [["bgr", []], ["div", [255.0]]]),
]

PARSE_ERRORS = [
    ("", "empty preprocessing spec: expected e.g. tf, caffe, torch, none"),
    ("imagenet", "unknown preprocessing 'imagenet': expected a preset (caffe, none, tf, torch; families"),
    ("rescale", "preprocessing step 'rescale': expected rescale:SCALE[:OFFSET]"),
    ("rescale:1:2:3", "preprocessing step 'rescale:1:2:3': expected rescale:SCALE[:OFFSET]"),
    ("rescale:abc", "invalid number 'abc' in preprocessing step 'rescale:abc'"),
    ("rescale:1/0", "invalid number '1/0'"),
    ("rescale:nan", "invalid number 'nan'"),
    ("normalize:0.5", "expected normalize:MEAN:STD"),
    ("normalize:0.5:0", "every STD must be above 0"),
    ("normalize:1/2:1", "1/D divides, and only in a rescale scale"),
    ("tf+", "empty step in preprocessing spec 'tf+'"),
    ("none+tf", "'none' cannot be combined with other steps"),
    ("bgr:1", "preprocessing step 'bgr:1': expected bgr"),
    ("x" * 2000, "preprocessing spec of 2000 characters; the most is 1000"),
]


@pytest.mark.parametrize(("text", "normalised", "ops"), PARSE_CASES)
def test_parse(text, normalised, ops):
    spec = parse_preprocess(text)
    assert spec.text == normalised
    assert spec.to_dict()["ops"] == ops


@pytest.mark.parametrize(("text", "message"), PARSE_ERRORS)
def test_parse_refusals(text, message):
    with pytest.raises(InvalidInput) as exc:
        parse_preprocess(text)
    assert message in str(exc.value)


@pytest.mark.parametrize(("text", "channels", "message"), [
    ("caffe", 1, "preprocessing 'caffe' swaps RGB to BGR, which needs 3 channels; the input has 1"),
    ("normalize:1,2:1", 3,
     "preprocessing 'normalize:1,2:1' gives 2 values per channel (sub 1,2), but the input "
                           "has 3 channel(s); give one value or 3"),
    ("torch", 4, "gives 3 values per channel"),
])
def test_channel_count_refusals(text, channels, message):
    with pytest.raises(InvalidInput) as exc:
        check_channels(parse_preprocess(text), channels, "the input")
    assert message in str(exc.value)


def test_one_value_fits_any_channel_count():
    for channels in (1, 3, 4):
        check_channels(parse_preprocess("rescale:1/255:-0.5"), channels, "the input")


# -- the three families the issue names: raw pixels through the stage == preprocess_input + base -----------
FAMILIES = [
    (
        "mnv2",
        "mobilenet_v2",
        lambda: keras.applications.MobileNetV2(
            include_top=False, weights=None, alpha=0.35, input_shape=(32, 32, 3)
        ),
        keras.applications.mobilenet_v2.preprocess_input,
        "Conv1",
    ),
    (
        "r50",
        "resnet50",
        lambda: keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3)),
        keras.applications.resnet50.preprocess_input,
        "conv1_conv",
    ),
    (
        "d121",
        "densenet",
        lambda: keras.applications.DenseNet121(include_top=False, weights=None, input_shape=(32, 32, 3)),
        keras.applications.densenet.preprocess_input,
        "conv1_conv",
    ),
]


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    """A store with the three bases registered, and each base model."""
    svc = Service(tmp_path_factory.mktemp("apps") / "store")
    keras.utils.set_random_seed(0)
    bases = {}
    for name, _, make, _, _ in FAMILIES:
        bases[name] = make()
        svc.register_model(bases[name], name)
    yield svc, bases
    svc.close()


def _scaled_close(got: np.ndarray, want: np.ndarray) -> bool:
    scale = max(float(np.abs(want).max()), 1e-30)
    return bool(np.allclose(got, want, rtol=1e-5, atol=1e-5 * scale))


def _outputs(model, layers, x):
    """The outputs of ``layers`` of ``model`` on ``x``, in inference mode (one eager call, nothing
    compiled)."""
    sub = keras.Model(model.inputs, [model.get_layer(name).output for name in layers])
    return [keras.ops.convert_to_numpy(t) for t in sub([x], training=False)]


@pytest.mark.parametrize(("name", "preset", "make", "preprocess_input", "first"), FAMILIES,
                         ids=[f[0] for f in FAMILIES])
def test_raw_pixels_through_the_stage_match_the_family_preprocess_input(
    apps, name, preset, make, preprocess_input, first
):
    svc, bases = apps
    base = bases[name]
    last = base.layers[-1].name
    built = build_network(svc.store, name, ".*", preprocess=preset, head="gap", classes=2,
                          exits=[last], seed=0)
    assert built.lineage["preprocess"]["spec"] == preset and built.lineage["warnings"] == []
    raw = np.random.default_rng(1).uniform(0, 255, size=(3, 32, 32, 3)).astype("float32")
    got = _outputs(built.model, [first, last], raw)  # the first reused layer and the reused part's end
    want = _outputs(base, [first, last], preprocess_input(raw.copy()))
    for layer, g, w in zip((first, last), got, want, strict=True):
        assert _scaled_close(g, w), (layer, np.abs(g - w).max(), np.abs(w).max())
    # Raw pixels straight into the base give something else: the comparison above can fail.
    assert not _scaled_close(_outputs(base, [first], raw)[0], want[0])


def test_show_and_describe_carry_the_stage_and_the_base_family(apps, tmp_path):
    svc, _ = apps
    svc.build("mnv2-shown", "mnv2", ".*", preprocess="tf", head="gap", classes=2, seed=0)
    shown = CliRunner().invoke(cli, ["show", "mnv2-shown", "--store", str(svc.store_root)],
                               catch_exceptions=False)
    assert re.search(r"\n  preprocessing +tf \(x / 127.5 - 1\) in layer preprocess: takes raw pixels "
                     r"0..255\n",
                     shown.output), shown.output
    assert re.search(r"\n  expects +raw pixels: keras.applications MobileNetV2 with its preprocessing "
                     r"layers\n",
                     shown.output), shown.output
    base = CliRunner().invoke(cli, ["show", "mnv2", "--store", str(svc.store_root)], catch_exceptions=False)
    assert re.search(r"\n  expects +tf preprocessing \(pixels scaled to \[-1, 1\]\), as keras.applications "
                     r"MobileNetV2; build from it with --preprocess mobilenet_v2\n", base.output), base.output
    d = svc.describe_model("mnv2-shown").to_dict()["model"]
    assert d["preprocess"] == {"spec": "tf", "ops": TF_OPS, "layer": "preprocess"}
    assert d["base_family"]["family"] == "mobilenet_v2" and d["base_family"]["included"] is True
    layers = CliRunner().invoke(cli, ["layers", "mnv2-shown", "--store", str(svc.store_root)],
                                catch_exceptions=False)
    assert re.search(r"\n0 +preprocess +reuse>Preprocess +\(None, 32, 32, 3\) +0 +no +input_layer",
                     layers.output), \
        layers.output


def test_cli_build_warns_names_the_preset_and_json_carries_it(apps):
    svc, _ = apps
    store = str(svc.store_root)
    r = CliRunner().invoke(cli, ["build", "r50-cli", "--from", "r50", "--reuse", "conv1_.*|pool1_.*",
                                 "--head", "gap", "--classes", "2", "--store", store], catch_exceptions=False)
    assert r.exit_code == 0
    warning = [line for line in r.output.splitlines() if line.startswith("Warning: ")]
    assert warning == ["Warning: r50:1 looks like keras.applications ResNet50 (layers conv1_conv, conv1_bn, "
                       "conv2_block1_0_conv, conv2_block1_add), which expects caffe preprocessing (BGR "
                       "channel order, ImageNet mean subtracted, unscaled); this build feeds its layers "
                       "the raw input: pass --preprocess resnet50 to put that stage in the model (or "
                       "--preprocess none if your data is already preprocessed)"]
    j = CliRunner().invoke(cli, ["build", "r50-cli", "--from", "r50", "--reuse", "conv1_.*|pool1_.*",
                                 "--head", "gap", "--classes", "2", "--preprocess", "resnet50", "--json",
                                 "--store", store],
                           catch_exceptions=False)
    out = json.loads(j.output)
    assert out["warnings"] == [] and out["lineage"]["preprocess"]["spec"] == "resnet50"
    assert out["preprocess"]["layer"] == "preprocess" and out["version"] == 2
    none = CliRunner().invoke(cli, ["build", "r50-cli", "--from", "r50", "--reuse", "conv1_.*", "--head",
                                    "gap", "--classes", "2", "--preprocess", "none", "--json",
                                    "--store", store],
                              catch_exceptions=False)
    assert json.loads(none.output)["warnings"] == [] and json.loads(none.output)["preprocess"] is None


def test_a_base_with_its_own_preprocessing_gets_no_warning(tmp_path):
    svc = Service(tmp_path / "store")
    keras.utils.set_random_seed(0)
    svc.register_model(keras.applications.MobileNetV3Small(include_top=False, weights=None, minimalistic=True,
                                                           input_shape=(32, 32, 3)), "v3")
    assert svc.model_info("v3").base_family["included"] is True
    built = build_network(svc.store, "v3", ".*", head="gap", classes=2)
    assert (
        built.lineage["warnings"] == [] and built.lineage["base_family"]["architecture"] == "MobileNetV3Small"
    )
    twice = build_network(svc.store, "v3", ".*", head="gap", classes=2, preprocess="tf")
    assert twice.lineage["warnings"] == [
        "v3:1 (MobileNetV3Small) carries its own preprocessing and the selection copies it: "
        "--preprocess tf is applied before it, so twice"]


BUILD_REFUSALS = [
    (["--from", "conv", "--reuse", "conv", "--preprocess", "caffe"],
     "Error: preprocessing 'caffe' swaps RGB to BGR, which needs 3 channels; the input image (shape "
     "(8, 8, 1)) has 1"),
    (["--from", "conv", "--reuse", "conv", "--preprocess", "normalize:1,2,3:1"],
     "Error: preprocessing 'normalize:1,2,3:1' gives 3 values per channel (sub 1,2,3), but the input image "
     "(shape (8, 8, 1)) has 1 channel(s); give one value or 1"),
    (["--from", "conv", "--reuse", "conv", "--preprocess", "imagenet"],
     "Error: unknown preprocessing 'imagenet': expected a preset (caffe, none, tf, torch; families convnext"),
    (["--from", "mlp", "--reuse", "hidden1", "--preprocess", "tf"],
     "Error: preprocessing 'tf' is for images: the new input features has shape (8) of float32, expected "
     "(height, width, channels) of floats"),
]


@pytest.mark.parametrize(("args", "error"), BUILD_REFUSALS)
def test_bad_preprocessing_is_one_error_line_and_registers_nothing(tmp_path, args, error):
    svc = Service(tmp_path / "store")
    svc.register_model(make_conv(), "conv")
    svc.register_model(make_mlp(), "mlp")
    r = CliRunner().invoke(cli, ["build", "new", *args, "--head", "gap" if args[1] == "conv" else "",
                                 "--classes", "2", "--store", str(tmp_path / "store")])
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(error), r.output
    assert [i.name for i in svc.list_models()] == ["conv", "mlp"]


SAFE_LOAD = """
import json, sys
import keras, numpy as np
x_path, paths = sys.argv[1], sys.argv[2:]
before = []
for path in paths:
    try:
        keras.saving.load_model(path, compile=False, safe_mode=True)
        before.append("loaded")
    except Exception as exc:
        before.append(type(exc).__name__)
import reuse.layers
out = []
for path in paths:
    model = keras.saving.load_model(path, compile=False, safe_mode=True)
    out.append({"layers": [type(l).__name__ for l in model.layers],
                "y": model.predict(np.load(x_path), verbose=0).tolist()})
print(json.dumps({"before": before, "after": out}))
"""


def test_plain_keras_loads_a_built_model_in_safe_mode_after_import_reuse_layers(tmp_path):
    svc = Service(tmp_path / "store")
    svc.register_model(keras.Sequential([keras.Input((8, 8, 3), name="pixels"),
                                         keras.layers.Conv2D(2, 3, name="conv")], name="b"), "b")
    info = svc.build("clf", "b", "conv", preprocess="caffe", head="gap", classes=2, seed=0)
    svc.export_model(info.ref, tmp_path / "clf.keras")
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    want = svc.load_model(info.ref).predict(x, verbose=0)
    paths = [str(tmp_path / "clf.keras"), str(info.path)]  # the native file and the store's own HDF5 file
    r = subprocess.run(
        [sys.executable, "-c", SAFE_LOAD, str(tmp_path / "x.npy"), *paths],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert "loaded" not in got["before"]  # without the import Keras does not know reuse>Preprocess
    for loaded in got["after"]:
        assert "Preprocess" in loaded["layers"]
        np.testing.assert_allclose(np.asarray(loaded["y"]), want, rtol=1e-6, atol=1e-7)


def test_onnx_export_of_a_model_with_a_stage_matches_keras_on_raw_pixels(tmp_path):
    from reuse.export import onnx_file

    svc = Service(tmp_path / "store")
    keras.utils.set_random_seed(0)
    svc.register_model(keras.Sequential([keras.Input((8, 8, 3), name="pixels"),
                                         keras.layers.Conv2D(4, 3, activation="relu", name="conv")],
                                        name="b"), "b")
    info = svc.build("clf", "b", "conv", preprocess="torch", head="gap", classes=3, seed=0)
    result = svc.export_model(info.ref, tmp_path / "clf.onnx")
    assert result.max_difference is not None and result.max_difference <= 1e-5
    session = onnx_file.open_session(tmp_path / "clf.onnx")
    x = np.random.default_rng(2).uniform(0, 255, (5, 8, 8, 3)).astype("float32")
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, svc.load_model(info.ref).predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_build_over_grpc_carries_the_stage_and_the_warning(apps):
    from reuse.client import ReuseClient
    from reuse.grpc.server import start_in_thread
    from reuse.remote import RemoteService

    svc, _ = apps
    with start_in_thread(svc) as server, ReuseClient(server.target) as client:
        warned = client.build(name="mnv2-remote", base="mnv2", reuse="Conv1|bn_Conv1|Conv1_relu", head="gap",
                              classes=2)
        assert warned.state == "succeeded"
        assert warned.result["warnings"][0].startswith("mnv2:1 looks like keras.applications MobileNetV2")
        # refused before the job runs
        with pytest.raises(InvalidInput, match="unknown preprocessing 'imagenet'"):
            client.build(name="mnv2-remote", base="mnv2", reuse="Conv1", head="gap", classes=2,
                         preprocess="imagenet")
        remote = RemoteService(server.target)
        try:
            info = remote.build("mnv2-remote", "mnv2", "Conv1|bn_Conv1|Conv1_relu", head="gap", classes=2,
                                preprocess="tf")
        finally:
            remote.close()
    assert info.lineage["preprocess"]["spec"] == "tf" and info.lineage["warnings"] == []
    assert info.preprocess == {"spec": "tf", "ops": TF_OPS, "layer": "preprocess"}  # DescribeModel carries it
    assert [i.version for i in svc.model_versions("mnv2-remote")] == [1, 2]
