"""Recognising keras.applications architectures (reuse.graph.applications): every family the issue names,
built with ``weights=None`` and small inputs, and the forms a base takes in practice (a renamed or replaced
top, a cut-off base, a nested backbone, a base built without its own preprocessing, preprocessing put in front
of it by hand), read from the rows the store records at register and from a stored architecture."""

from __future__ import annotations

import keras
import pytest

from reuse.build.stage import arch_rows
from reuse.graph.applications import recognise, rows_of_meta
from reuse.graph.reader import parse_architecture
from reuse.store import ModelStore
from reuse.store.keras_io import describe_model

A = keras.applications


def _small(fn, size=32, **kw):
    return lambda: fn(include_top=False, weights=None, input_shape=(size, size, 3), **kw)


# (id, constructor, family, architecture, preset its inputs need (None: it carries its preprocessing))
FAMILY_CASES = [
    ("MobileNet", _small(A.MobileNet, alpha=0.25), "mobilenet", "MobileNet", "tf"),
    ("MobileNetV2", _small(A.MobileNetV2, alpha=0.35), "mobilenet_v2", "MobileNetV2", "tf"),
    ("MobileNetV3Small", _small(A.MobileNetV3Small, minimalistic=True), "mobilenet_v3",
     "MobileNetV3Small", None),
    ("MobileNetV3Small-noprep", _small(A.MobileNetV3Small, minimalistic=True, include_preprocessing=False),
     "mobilenet_v3", "MobileNetV3Small", "tf"),
    ("ResNet50", _small(A.ResNet50), "resnet", "ResNet50", "caffe"),
    ("ResNet50V2", _small(A.ResNet50V2), "resnet_v2", "ResNet50V2", "tf"),
    ("VGG16", _small(A.VGG16), "vgg", "VGG16", "caffe"),
    ("VGG19", _small(A.VGG19), "vgg", "VGG19", "caffe"),
    ("DenseNet121", _small(A.DenseNet121), "densenet", "DenseNet121", "torch"),
    ("EfficientNetB0", _small(A.EfficientNetB0), "efficientnet", "EfficientNet", None),
    ("EfficientNetV2B0", _small(A.EfficientNetV2B0), "efficientnet_v2", "EfficientNetV2", None),
    ("ConvNeXtTiny", _small(A.ConvNeXtTiny), "convnext", "ConvNeXt", None),
    ("ConvNeXtTiny-noprep", _small(A.ConvNeXtTiny, include_preprocessing=False), "convnext",
     "ConvNeXt", "torch"),
    ("Xception", _small(A.Xception, size=71), "xception", "Xception", "tf"),
    ("InceptionV3", _small(A.InceptionV3, size=75), "inception_v3", "InceptionV3", "tf"),
    ("NASNetMobile", _small(A.NASNetMobile), "nasnet", "NASNet", "tf"),
]


@pytest.mark.parametrize(("make", "family", "architecture", "needs"), [c[1:] for c in FAMILY_CASES],
                         ids=[c[0] for c in FAMILY_CASES])
def test_every_family_is_recognised_with_the_preprocessing_it_expects(make, family, architecture, needs):
    found = recognise(rows_of_meta(describe_model(make())))
    assert found is not None
    assert (found.family, found.architecture, found.needs) == (family, architecture, needs)
    assert found.included is (needs is None)


def _mobilenet_v2():
    keras.utils.set_random_seed(0)
    return A.MobileNetV2(include_top=False, weights=None, alpha=0.35, input_shape=(32, 32, 3))


def _renamed_top():
    base = _mobilenet_v2()
    x = keras.layers.GlobalAveragePooling2D(name="my_pool")(base.output)
    return keras.Model(base.input, keras.layers.Dense(4, name="my_head")(x), name="pets")


def _cut_off():
    base = _mobilenet_v2()
    return keras.Model(base.input, base.get_layer("block_2_add").output, name="lower")


def _nested():
    return keras.Sequential([keras.Input((32, 32, 3)), _mobilenet_v2(), keras.layers.GlobalAveragePooling2D(),
                             keras.layers.Dense(3)], name="wrapped")


def _scaled_by_hand():
    return keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 127.5, offset=-1),
                             _mobilenet_v2()], name="scaled")


def _borrowed_name():
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, name="Conv1")(inp)
    return keras.Model(inp, keras.layers.BatchNormalization(name="bn_Conv1")(x))


@pytest.mark.parametrize(("make", "expected"), [
    (_renamed_top, ("MobileNetV2", "", "tf")),
    (_cut_off, ("MobileNetV2", "", "tf")),
    (_nested, ("MobileNetV2", "mobilenetv2_0.35_32", "tf")),
    (_scaled_by_hand, ("MobileNetV2", "mobilenetv2_0.35_32", None)),
    (_borrowed_name, None),
], ids=["renamed-top", "cut-off", "nested-backbone", "preprocessing-in-front", "borrowed-layer-names"])
def test_bases_as_people_make_them(make, expected, tmp_path):
    model = make()
    from_meta = recognise(rows_of_meta(describe_model(model)))
    store = ModelStore(tmp_path / "store")
    info = store.register(model, "base")
    from_arch = recognise(arch_rows(parse_architecture(store.model_config("base"))))
    for found in (from_meta, from_arch):
        got = None if found is None else (found.architecture, found.container, found.needs)
        assert got == expected
    assert (info.base_family or None) == (from_meta.to_dict() if from_meta else None)


def test_a_model_that_is_no_application_is_not_recognised(tiny_model):
    assert recognise(rows_of_meta(describe_model(tiny_model))) is None
