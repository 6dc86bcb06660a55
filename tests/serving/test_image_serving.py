"""Images in and out over the wire: encoded images (KServe BYTES) and pixels (UINT8) decoded and resized as
the training data path reads image folders (reuse.serving.image_inputs), served by a real gRPC server to our
client, raw stubs and the stock tritonclient, class names in ModelMetadata, Triton's classification
output, `reuse infer --input` images, and every bad input refused with the element's index."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import zlib
from pathlib import Path

import grpc
import keras
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_mlp
from grpc_support import rpc_error, stubs
from PIL import Image
from triton_support import triton_python

from reuse.cli import cli
from reuse.client import ReuseClient
from reuse.data import load_data
from reuse.errors import InvalidInput
from reuse.grpc import convert
from reuse.grpc._proto import inference_pb2 as ipb
from reuse.grpc.convert_images import parse_classification
from reuse.grpc.server import start_in_thread
from reuse.service import Service
from reuse.serving.image_inputs import ImageLimits, ImageTarget, decode_images

ROOT = Path(__file__).resolve().parents[2]
RGB16 = ImageTarget(16, 16, 3, "float32")


def encode(pixels: np.ndarray, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_bomb(width: int = 60_000, height: int = 60_000) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels (and carries no pixel data)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + \
        chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def pixels():
    rng = np.random.default_rng(0)
    return {"rgb": rng.integers(0, 256, (20, 24, 3), dtype=np.uint8),
            "rgba": rng.integers(0, 256, (9, 7, 4), dtype=np.uint8),
            "gray": rng.integers(0, 256, (30, 17), dtype=np.uint8),
            "one": rng.integers(0, 256, (1, 1, 3), dtype=np.uint8),
            "same": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory, pixels):
    """An image folder of every kind of file a user has: PNG (RGB, RGBA, grayscale, 1x1, already 16x16),
    JPEG, BMP and GIF, in three classes."""
    root = tmp_path_factory.mktemp("images")
    files = {"cat/a.png": encode(pixels["rgb"]), "cat/b.png": encode(pixels["rgba"]),
             "dog/c.png": encode(pixels["gray"]), "dog/d.jpg": encode(pixels["rgb"], "JPEG", quality=90),
             "fox/e.bmp": encode(pixels["one"], "BMP"), "fox/f.gif": encode(pixels["same"], "GIF"),
             "fox/g.png": encode(pixels["same"])}
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_decoded_images_equal_what_the_training_data_path_reads(folder):
    data = load_data(f"images:{folder}?size=16,16")
    paths = sorted(folder.rglob("*.*"))
    got = decode_images("BYTES", [len(paths)], [p.read_bytes() for p in paths], RGB16)
    np.testing.assert_array_equal(got, data.x)  # alpha dropped, gray made RGB, 1x1 scaled up: as in training
    gray = load_data(f"images:{folder}?size=16,16&color=grayscale")
    got = decode_images("BYTES", [len(paths), 1], [p.read_bytes() for p in paths],
                        ImageTarget(16, 16, 1, "float32"))
    np.testing.assert_array_equal(got, gray.x)


def test_uint8_pixels_resize_as_a_png_of_them_does(pixels):
    batch = np.stack([pixels["rgb"], pixels["rgb"][::-1]])
    from_pixels = decode_images("UINT8", list(batch.shape), batch, RGB16)
    from_png = decode_images("BYTES", [2], [encode(p) for p in batch], RGB16)
    np.testing.assert_array_equal(from_pixels, from_png)
    same = decode_images("UINT8", [1, 16, 16, 3], pixels["same"][None], RGB16)
    np.testing.assert_array_equal(same[0], pixels["same"].astype("float32"))


def _truncated_jpeg(pixels) -> bytes:
    """A JPEG cut off in its pixel data (its header whole)."""
    whole = encode(np.tile(pixels["rgb"], (4, 4, 1)), "JPEG", quality=90)
    return whole[: len(whole) * 2 // 3]


SMALL = ImageLimits(max_image_bytes=8000, max_request_bytes=12000, max_batch_bytes=16 * 16 * 3 * 4 * 3)
DECODE_REFUSALS = [
    ("not-an-image", lambda px: ("BYTES", [2], [encode(px["rgb"]), b"hello"]),
     "input 'x': element 1: not a PNG/JPEG/BMP/GIF image (Pillow does not recognise its bytes)"),
    ("truncated-jpeg", lambda px: ("BYTES", [1], [_truncated_jpeg(px)]),
     "input 'x': element 0: cannot decode the 96x80 image (image file is truncated"),
    ("png-bomb", lambda px: ("BYTES", [1], [png_bomb()]),
     "input 'x': element 0: refused as a decompression bomb (Image size (3600000000 pixels) exceeds limit"),
    ("empty", lambda px: ("BYTES", [1], [b""]), "input 'x': element 0: empty; expected an encoded PNG"),
    ("tiff", lambda px: ("BYTES", [1], [encode(px["rgb"], "TIFF")]), "input 'x': element 0: not a PNG/JPEG"),
    ("image-cap", lambda px: ("BYTES", [1], [b"x" * 8001]),
     "input 'x': element 0: 8001 bytes; the most one image may have is 8000"),
    ("request-cap", lambda px: ("BYTES", [2], [b"x" * 7000, b"x" * 7000]),
     "input 'x': 14000 bytes of images; the most one request may carry is 12000"),
    ("batch-cap", lambda px: ("BYTES", [4], [b"x"] * 4),
     "input 'x': 4 images of 16x16x3 need 12288 bytes decoded"),
    ("bytes-shape", lambda px: ("BYTES", [2, 2], [b"x"] * 4),
     "input 'x': BYTES shape [2, 2]; expected [n] or [n, 1]"),
    ("bytes-count", lambda px: ("BYTES", [3], [b"x"] * 2),
     "input 'x': 2 BYTES elements for shape [3]; expected 3"),
    ("uint8-channels", lambda px: ("UINT8", [1, 9, 7, 4], px["rgba"][None]),
     "input 'x': UINT8 shape [1, 9, 7, 4]; expected [n, height, width, 3] (rgb pixels"),
    ("uint8-rank", lambda px: ("UINT8", [20, 24, 3], px["rgb"]),
     "input 'x': UINT8 shape [20, 24, 3]; expected"),
    ("uint8-bomb", lambda px: ("UINT8", [1, 60_000, 60_000, 3], np.zeros(1, np.uint8)),
     "input 'x': UINT8 images of 60000x60000 pixels, more than the decompression-bomb limit"),
]


@pytest.mark.parametrize(("make", "message"), [c[1:] for c in DECODE_REFUSALS],
                         ids=[c[0] for c in DECODE_REFUSALS])
def test_bad_images_are_refused_naming_the_element(pixels, make, message):
    datatype, shape, elements = make(pixels)
    with pytest.raises(InvalidInput) as exc:
        decode_images(datatype, shape, elements, RGB16, name="x", limits=SMALL)
    assert str(exc.value).startswith(message), str(exc.value)


# -- served --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory, folder):
    """A store with an image classifier (a tiny conv base with the tf stage, trained on the folder, so it
    has class names) and an MLP; a server on it."""
    svc = Service(tmp_path_factory.mktemp("served") / "store")
    keras.utils.set_random_seed(0)
    svc.register_model(keras.Sequential([keras.Input((16, 16, 3), name="pixels"),
                                         keras.layers.Conv2D(4, 3, activation="relu", name="conv")],
                                        name="b"), "b")
    svc.build("pets", "b", "conv", preprocess="tf", head="gap", classes=3, seed=0)
    svc.train_model("pets", f"images:{folder}?size=16,16", options={"epochs": 2, "seed": 0})
    svc.register_model(make_mlp(), "mlp")
    with start_in_thread(svc) as server:
        yield svc, server
    svc.close()


def _local(svc, image: bytes) -> np.ndarray:
    img = keras.utils.load_img(io.BytesIO(image), target_size=(16, 16), interpolation="bilinear")
    return svc.load_model("pets").predict(keras.utils.img_to_array(img)[None], verbose=0)


def test_a_png_sent_as_bytes_gets_the_probabilities_of_local_predict(served, folder, pixels):
    svc, server = served
    image = (folder / "cat" / "a.png").read_bytes()
    want = _local(svc, image)
    # trained on raw pixels, cached
    assert svc.model_info("pets").settings["cached_layers"][0] == "preprocess"
    with ReuseClient(server.target) as client:
        for got in (client.infer("pets", [image])["output"],
                    client.infer("pets", folder / "cat" / "a.png")["output"],
                    client.infer("pets", [image], raw=False)["output"]):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        u8 = client.infer("pets", {"pixels": pixels["rgb"][None]})["output"]
        np.testing.assert_allclose(u8, want, rtol=1e-5, atol=1e-6)  # the PNG's pixels as UINT8: the same
        floats = client.infer("pets", load_data(f"images:{folder}?size=16,16").x[:1])["output"]
        np.testing.assert_allclose(floats, want, rtol=1e-5, atol=1e-6)


def test_metadata_advertises_the_image_forms_and_the_class_names(served):
    _, server = served
    channel, inference, _ = stubs(server.target)
    with channel:
        meta = inference.ModelMetadata(ipb.ModelMetadataRequest(name="pets"))
        server_meta = inference.ServerMetadata(ipb.ServerMetadataRequest())
    assert json.loads(meta.parameters["class_names"].string_param) == ["cat", "dog", "fox"]
    params = {k: v.string_param for k, v in meta.inputs[0].parameters.items()}
    assert params == {"image_datatypes": "BYTES,UINT8", "image_formats": "PNG,JPEG,BMP,GIF",
                      "image_size": "16,16", "image_channels": "3", "color_mode": "rgb",
                      "bytes_shape": "[-1]", "uint8_shape": "[-1,-1,-1,3]", "preprocess": "tf"}
    assert (meta.inputs[0].datatype, list(meta.inputs[0].shape)) == ("FP32", [-1, 16, 16, 3])
    assert "classification" in server_meta.extensions
    sig = convert.signature_of(meta)
    assert sig.class_names == ("cat", "dog", "fox") and sig.preprocess == "tf"


def test_classification_returns_the_top_classes_by_name(served, folder):
    svc, server = served
    images = [(folder / "cat" / "a.png").read_bytes(), (folder / "dog" / "c.png").read_bytes()]
    probs = np.concatenate([_local(svc, x) for x in images])
    with ReuseClient(server.target) as client:
        top = client.infer("pets", images, classification=2)["output"]
        every = client.infer("pets", images, classification=9)["output"]  # more than there are: all three
    assert top.shape == (2, 2) and every.shape == (2, 3)
    names = ["cat", "dog", "fox"]
    for row, p in zip(parse_classification(top), probs, strict=True):
        best = np.argsort(-p)[:2]
        assert [t.index for t in row] == list(best) and [t.label for t in row] == [names[i] for i in best]
        np.testing.assert_allclose([t.score for t in row], p[best], atol=1e-6)
    assert top[0, 0].decode().count(":") == 2


def _raw_bytes_request(elements: list[bytes],
                       model: str = "pets", name: str = "pixels") -> ipb.ModelInferRequest:
    return convert.infer_request(model, "", {name: elements})


def _classify(k: ipb.InferParameter) -> ipb.ModelInferRequest:
    req = _raw_bytes_request([encode(np.zeros((4, 4, 3), np.uint8))])
    req.outputs.add(name="output").parameters["classification"].CopyFrom(k)
    return req


def _bad_prefix() -> ipb.ModelInferRequest:
    req = _raw_bytes_request([b"abc"])
    req.raw_input_contents[0] = struct.pack("<I", 99) + b"abc"
    return req


def _uint8(shape: list[int]) -> ipb.ModelInferRequest:
    return convert.infer_request("pets", "", {"pixels": np.zeros(shape, np.uint8)})


SERVED_REFUSALS = [
    ("not-an-image", lambda ok: _raw_bytes_request([ok, b"<html>", ok]),
     "input 'pixels': element 1: not a PNG/JPEG/BMP/GIF image"),
    ("png-bomb", lambda ok: _raw_bytes_request([ok, ok, png_bomb()]),
     "input 'pixels': element 2: refused as a decompression bomb"),
    ("length-prefix", lambda ok: _bad_prefix(), "input 'pixels': element 0 says 99 bytes but only 3 remain"),
    ("uint8-shape", lambda ok: _uint8([2, 8, 8]),
     "input 'pixels': UINT8 shape [2, 8, 8]; expected [n, height, width, 3]"),
    ("uint8-channels", lambda ok: _uint8([1, 8, 8, 4]), "input 'pixels': UINT8 shape [1, 8, 8, 4]"),
    ("not-an-image-model", lambda ok: _raw_bytes_request([ok], model="mlp", name="features"),
     "input 'features': datatype BYTES, expected FP32"),
    ("classification-zero", lambda ok: _classify(ipb.InferParameter(int64_param=0)),
     "output 'output': parameter classification must be a positive integer"),
    ("classification-text", lambda ok: _classify(ipb.InferParameter(string_param="many")),
     "output 'output': parameter classification must be a positive integer"),
]


@pytest.mark.parametrize(("make", "message"), [c[1:] for c in SERVED_REFUSALS],
                         ids=[c[0] for c in SERVED_REFUSALS])
def test_bad_requests_are_invalid_argument_and_the_server_goes_on(served, folder, make, message):
    _, server = served
    ok = (folder / "cat" / "a.png").read_bytes()
    channel, inference, _ = stubs(server.target)
    with channel:
        err = rpc_error(inference.ModelInfer, make(ok))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.details().startswith(message), err.details()
        after = inference.ModelInfer(_raw_bytes_request([ok]))  # the next caller is served
    assert convert.decode_outputs(after)["output"].shape == (1, 3)


def test_a_stock_tritonclient_sends_bytes_and_asks_for_classes(served, folder, tmp_path):
    py = triton_python()
    svc, server = served
    image = folder / "cat" / "a.png"
    r = subprocess.run([str(py), str(ROOT / "tests" / "triton_image_check.py"), server.target, "pets",
                        str(image), "2"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    want = _local(svc, image.read_bytes())
    np.testing.assert_allclose(np.asarray(got["output"]), np.concatenate([want, want]), rtol=1e-5, atol=1e-6)
    best = int(np.argmax(want[0]))
    assert got["classification"][0][0].endswith(f":{best}:{['cat', 'dog', 'fox'][best]}")
    assert (
        got["metadata"]["inputs"][0]["datatype"] == "FP32" and "classification" in got["server"]["extensions"]
    )


def test_cli_infer_takes_image_files_and_folders_locally_and_over_grpc(served, folder):
    svc, server = served
    store = str(svc.store_root)
    want = _local(svc, (folder / "cat" / "a.png").read_bytes())[0]
    best = ["cat", "dog", "fox"][int(np.argmax(want))]
    for where in (["--store", store], ["--server", server.target]):
        r = CliRunner().invoke(cli, ["infer", "pets", "--input", str(folder / "cat"), "--input",
                                     str(folder / "fox" / "e.bmp"), "--top", "2", *where],
                               catch_exceptions=False)
        lines = r.output.splitlines()
        assert lines[0] == "pets:2: 3 image(s)"
        assert lines[1].startswith(f"  {folder / 'cat' / 'a.png'}  {best} {want.max():.3f}, ")
        j = CliRunner().invoke(cli, ["infer", "pets", "--input", str(folder), "--json", *where],
                               catch_exceptions=False)
        out = json.loads(j.output)
        assert [x["input"] for x in out["images"]] == [str(p) for p in sorted(folder.rglob("*.*"))]
        assert out["images"][0]["top"][0]["class"] == best and len(out["images"][0]["top"]) == 3
        np.testing.assert_allclose(out["outputs"]["output"][0], want, rtol=1e-5, atol=1e-6)


def test_cli_infer_names_the_file_that_is_not_an_image(served, folder, tmp_path):
    svc, server = served
    (tmp_path / "fake.png").write_bytes(b"not a png at all")
    for where in (["--store", str(svc.store_root)], ["--server", server.target]):
        r = CliRunner().invoke(cli, ["infer", "pets", "--input", str(folder / "cat" / "a.png"), "--input",
                                     str(tmp_path / "fake.png"), *where])
        assert r.exit_code == 1
        assert r.output == (f"Error: {tmp_path / 'fake.png'}: not a PNG/JPEG/BMP/GIF image (Pillow does not "
                            "recognise its bytes)\n")
    r = CliRunner().invoke(cli, ["infer", "mlp", "--input", str(folder / "cat" / "a.png"), "--store",
                                 str(svc.store_root)])
    assert r.exit_code == 1 and r.output.startswith("Error: model mlp:1 takes features [-1, 8] float32; "
                                                    "images need one input of shape [-1, height, width, "
                                                    "channels]")
