"""Training: only trainable weights change, the cache changes nothing but speed, early stopping,
events and cancellation, settings checks, evaluation and prediction."""

from __future__ import annotations

import threading

import keras
import numpy as np
import pytest
from conftest import make_mlp
from train_helpers import changed, layer_weights, toy_data

from reuse.data import Dataset
from reuse.errors import Cancelled, InvalidInput
from reuse.train import (
    EpochEnd,
    Predictor,
    TrainConfig,
    TrainFinished,
    TrainStarted,
    copy_model,
    evaluate,
    predict,
    train,
    train_seeds,
)

FAST = TrainConfig(epochs=3, batch_size=16, optimizer="sgd", lr=0.05, momentum=0.9)


def test_only_trainable_weights_change():
    model = make_mlp(batchnorm=True)
    for name in ("hidden1", "bn1", "hidden2"):
        model.get_layer(name).trainable = False
    before = layer_weights(model)
    result = train(model, toy_data(), FAST)
    # Trainable batch-norm layers (bn2, bn3) also move their statistics; frozen bn1 keeps them.
    assert changed(before, layer_weights(model)) == {"bn2", "hidden3", "bn3", "output"}
    assert result.epochs_run == 3 and len(result.history["loss"]) == 3
    assert result.cached_layers == ("hidden1", "bn1", "hidden2")


def test_cache_gives_the_same_results_as_no_cache():
    base = make_mlp()
    for name in ("hidden1", "hidden2"):
        base.get_layer(name).trainable = False
    a, b = copy_model(base), copy_model(base)
    val = toy_data(n=21, seed=5)
    cfg = TrainConfig(epochs=4, batch_size=7, optimizer="adam", lr=0.01, seed=3)
    ra = train(a, toy_data(), cfg, val=val)
    rb = train(b, toy_data(), cfg.with_(cache=False), val=val)
    assert ra.cached_layers == ("hidden1", "hidden2") and rb.cached_layers == ()
    for key in ra.history:
        np.testing.assert_allclose(ra.history[key], rb.history[key], rtol=1e-5, atol=1e-6)
    for key in ra.metrics:
        assert ra.metrics[key] == pytest.approx(rb.metrics[key], rel=1e-5, abs=1e-6)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)


def test_dropout_ends_the_cached_prefix():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, name="frozen1", trainable=False),
                              keras.layers.Dropout(0.5, name="drop"),
                              keras.layers.Dense(8, name="frozen2", trainable=False),
                              keras.layers.Dense(3, activation="softmax", name="out")])
    result = train(model, toy_data(), FAST)
    assert result.cached_layers == ("frozen1",)


def test_functional_chain_is_cached():
    inp = keras.Input((8,))
    h = keras.layers.Dense(6, activation="relu", name="a", trainable=False)(inp)
    out = keras.layers.Dense(3, activation="softmax", name="b")(h)
    result = train(keras.Model(inp, out), toy_data(), FAST)
    assert result.cached_layers == ("a",)


def test_early_stopping_stops_and_restores_the_best_epoch():
    rng = np.random.default_rng(0)
    train_ds = toy_data(n=30)
    # Validation labels unrelated to the inputs: validation loss rises as training fits.
    val = Dataset(train_ds.x + rng.normal(scale=0.1, size=train_ds.x.shape).astype(np.float32),
                  rng.permutation(train_ds.y), "noise")
    model = make_mlp(hidden=(64, 64))
    cfg = TrainConfig(epochs=200, batch_size=8, optimizer="adam", lr=0.01, early_stopping=3)
    result = train(model, train_ds, cfg, val=val)
    assert result.stopped_early and result.epochs_run < 200
    assert result.epochs_run == result.best_epoch + 3
    best = result.history["val_loss"][result.best_epoch - 1]
    assert best == min(result.history["val_loss"])
    assert result.metrics["val_loss"] == pytest.approx(best, rel=1e-4)


def test_events_in_order():
    events = []
    model = make_mlp()
    val = toy_data(n=12, seed=9)
    train(model, toy_data(), FAST.with_(epochs=4), val=val, progress=events.append)
    assert isinstance(events[0], TrainStarted) and isinstance(events[-1], TrainFinished)
    ends = [e for e in events if isinstance(e, EpochEnd)]
    assert [e.epoch for e in ends] == [1, 2, 3, 4] and all(e.epochs == 4 for e in ends)
    assert set(ends[0].losses) == {"loss", "val_loss"} and set(ends[0].metrics) == {
        "accuracy",
        "val_accuracy",
    }
    assert ends[-1].eta == 0.0 and all(e.eta >= 0 and e.elapsed > 0 for e in ends)
    assert [e.elapsed for e in ends] == sorted(e.elapsed for e in ends)
    assert events[0].samples == 60 and events[0].val_samples == 12 and events[0].steps_per_epoch == 4
    assert events[-1].epochs_run == 4 and "accuracy" in events[-1].metrics


def test_cancel_raises_between_epochs():
    cancel = threading.Event()
    seen = []

    def progress(event):
        seen.append(event)
        if isinstance(event, EpochEnd) and event.epoch == 1:
            cancel.set()

    with pytest.raises(Cancelled):
        train(make_mlp(), toy_data(), FAST.with_(epochs=50), progress=progress, cancel=cancel)
    assert not any(isinstance(e, TrainFinished) for e in seen)
    assert max(e.epoch for e in seen if isinstance(e, EpochEnd)) < 50


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"epochs": 0}, "invalid epochs 0: expected an integer >= 1"),
    ({"optimizer": "lbfgs"}, "invalid optimizer 'lbfgs': expected one of sgd, adam, rmsprop, adamw, nadam"),
    ({"lr": -1.0}, "invalid learning rate -1.0: expected a positive number"),
    ({"optimizer": "adam", "momentum": 0.9}, "momentum applies to sgd and rmsprop, not adam"),
    ({"clipnorm": 1.0, "clipvalue": 1.0}, "give clipnorm or clipvalue, not both"),
    ({"early_stopping": 0}, "invalid early-stopping patience 0: expected an integer >= 1"),
])
def test_config_is_checked(kwargs, message):
    with pytest.raises(InvalidInput) as e:
        TrainConfig(**kwargs)
    assert str(e.value) == message


def test_nothing_to_train_and_bad_data_fail_before_work():
    model = make_mlp()
    model.trainable = False
    with pytest.raises(InvalidInput, match="has no trainable weights"):
        train(model, toy_data(), FAST)
    model = make_mlp()
    before = layer_weights(model)
    bad = Dataset(np.zeros((4, 8), np.float32), np.array([0, 1, 2, 7]), "bad.npz")
    with pytest.raises(InvalidInput, match=r"bad.npz: labels \[7\] are out of range"):
        train(model, toy_data(), FAST, val=bad)
    assert changed(before, layer_weights(model)) == set()


def test_regularisation_is_part_of_the_training_loss():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(
        3, activation="softmax", kernel_regularizer=keras.regularizers.L2(10.0))])
    result = train(model, toy_data(), FAST.with_(epochs=1))
    assert result.history["loss"][0] > result.metrics["loss"] + 0.1


def test_evaluate_and_predict_match_keras():
    model = make_mlp()
    data = toy_data(n=37)
    out = predict(model, data)
    np.testing.assert_allclose(out, np.asarray(model(data.x, training=False)), rtol=1e-5, atol=1e-6)
    result = evaluate(model, data)
    assert result["samples"] == 37
    assert result["accuracy"] == pytest.approx(float(np.mean(out.argmax(1) == data.y)))
    expected = -np.mean(np.log(np.clip(out[np.arange(37), data.y], 1e-7, 1.0)))
    assert result["loss"] == pytest.approx(expected, rel=1e-4)
    p = Predictor(model, batch_size=16)
    np.testing.assert_allclose(p(data.x), out, rtol=1e-5, atol=1e-6)


def test_seeds_report_mean_and_std():
    model = make_mlp()
    res = train_seeds(model, toy_data(), FAST.with_(epochs=2), 2)
    assert res.first.model is model and len(res.runs) == 2
    acc = res.summary["accuracy"]
    assert len(acc["values"]) == 2 and acc["mean"] == pytest.approx(np.mean(acc["values"]))
    assert acc["std"] == pytest.approx(np.std(acc["values"]))
    assert res.runs[1].config.seed == 1


@pytest.mark.parametrize("opt", [
    {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "clipvalue": 0.05},
    {"optimizer": "rmsprop", "lr": 0.01, "momentum": 0.5, "clipnorm": 0.5},
    {"optimizer": "adam", "lr": 0.01, "clipnorm": 1.0},
])
def test_loop_takes_the_same_steps_as_keras_fit(opt):
    """Without shuffling, the compiled loop and Keras fit visit the same batches (the last one short):
    the weights must agree, whatever the optimizer's update is made of."""
    model = make_mlp()
    reference = copy_model(model)
    data = toy_data()
    cfg = TrainConfig(epochs=2, batch_size=16, shuffle=False, **opt)
    train(model, data, cfg)
    from reuse.train import make_optimizer

    reference.compile(make_optimizer(cfg), "sparse_categorical_crossentropy")
    reference.fit(data.x, data.y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    for ours, theirs in zip(model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_adam_on_large_and_small_weights_matches_keras_fit():
    """Adam updates large tensors with a fused kernel and small ones as one flat vector."""
    model = make_mlp(n_in=8, hidden=(2100, 4))  # hidden1's kernel has 16,800 weights
    reference = copy_model(model)
    data = toy_data()
    cfg = TrainConfig(epochs=1, batch_size=16, shuffle=False, optimizer="adam", lr=0.001)
    train(model, data, cfg)
    from reuse.train import make_optimizer

    reference.compile(make_optimizer(cfg), "sparse_categorical_crossentropy")
    reference.fit(data.x, data.y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for ours, theirs in zip(model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
