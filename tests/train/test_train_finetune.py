"""Fine-tuning: only the unfrozen layers change; batch normalisation stays in inference mode."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_mlp
from train_helpers import changed, layer_weights, toy_data

from reuse.errors import NoLayersMatched
from reuse.train import TrainConfig, finetune

CFG = TrainConfig(epochs=2, batch_size=16, optimizer="sgd", momentum=0.9)


def _frozen_mlp(**kw):
    model = make_mlp(**kw)
    for layer in model.layers[:-1]:
        layer.trainable = False
    return model


def test_finetune_changes_only_unfrozen_layers_at_a_tenth_of_the_rate():
    model = _frozen_mlp()
    before = layer_weights(model)
    result = finetune(model, "hidden[23]", toy_data(), CFG, base_lr=0.5)
    assert result.unfrozen == ("hidden2", "hidden3")
    assert changed(before, layer_weights(model)) == {"hidden2", "hidden3", "output"}
    assert result.config.lr == pytest.approx(0.05)
    assert result.cached_layers == ("hidden1",)
    assert model.get_layer("hidden2").trainable and not model.get_layer("hidden1").trainable


def test_prefix_match_and_explicit_rate():
    model = _frozen_mlp()
    result = finetune(model, "hidden", toy_data(), CFG.with_(lr=0.01), match="prefix")
    assert result.unfrozen == ("hidden1", "hidden2", "hidden3") and result.config.lr == 0.01


def test_batchnorm_stays_in_inference_mode():
    model = _frozen_mlp(batchnorm=True)
    bn = model.get_layer("bn2")
    stats = [np.array(bn.moving_mean), np.array(bn.moving_variance)]
    scale = [np.array(bn.gamma), np.array(bn.beta)]
    result = finetune(model, "hidden2|bn2", toy_data(), CFG.with_(lr=0.5))
    assert result.bn_inference == ("bn2",)
    np.testing.assert_array_equal(bn.moving_mean, stats[0])
    np.testing.assert_array_equal(bn.moving_variance, stats[1])
    assert not np.array_equal(np.array(bn.gamma), scale[0]) or not np.array_equal(np.array(bn.beta), scale[1])
    assert not bn.trainable  # Keras runs a frozen BatchNormalization layer in inference mode


def test_no_match_is_an_error_listing_layers():
    with pytest.raises(NoLayersMatched, match="scope 'conv.*' \\(full match\\) matched no layer; layers are: "
                       "hidden1, hidden2, hidden3, output"):
        finetune(_frozen_mlp(), "conv.*", toy_data(), CFG)
