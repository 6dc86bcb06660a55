"""Ensembles (issue 14): averaged outputs, votes, weight averaging, refusals, lineage, CLI, gRPC, training."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grpc
import keras
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_mlp
from grpc_support import infer_request, rpc_error, stubs, wait_until

from reuse.cli import cli
from reuse.data import output_kind
from reuse.errors import FailedPrecondition, IncompatibleShapes, InvalidInput
from reuse.grpc._proto import reuse_v1_pb2 as pb
from reuse.grpc.server import ServerConfig, start_in_thread
from reuse.layers.ensemble_combine import EnsembleCombine
from reuse.service import Service

ROOT = Path(__file__).resolve().parents[2]
BLOBS = "builtin:blobs?per_class=30"  # 90 samples, 2 features, 3 classes
N_IN = 2
CODE = grpc.StatusCode


@pytest.fixture
def svc(tmp_path):
    s = Service(tmp_path / "store")
    for seed in range(3):
        s.register_model(make_mlp(n_in=N_IN, seed=seed, batchnorm=True), "m")  # m:1..3, same architecture
    yield s
    s.close()


def batch(n: int = 16, n_in: int = N_IN) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, n_in)).astype("float32")


def outputs(svc: Service, refs: list[str], x: np.ndarray) -> list[np.ndarray]:
    return [np.asarray(svc.load_model(r)(x)) for r in refs]


# -- averaged outputs, weights, votes ------------------------------------------------------------
def test_mean_ensemble_equals_mean_of_members(svc):
    x = batch()
    info = svc.ensemble("ens", "m:1,m:2,m:3")
    want = np.mean(outputs(svc, ["m:1", "m:2", "m:3"], x), axis=0)
    np.testing.assert_allclose(np.asarray(svc.load_model(info.ref)(x)), want, atol=1e-6)
    assert info.output_shape == [None, 3] and info.input_shape == [None, N_IN]
    assert output_kind(svc.load_model(info.ref)) == output_kind(svc.load_model("m:1"))
    assert {x["path"].split("/")[0] for x in svc.store.nested_layers(info.ref)} == {
        "member1",
        "member2",
        "member3",
    }


def test_weighted_ensemble_normalises_weights(svc):
    x = batch()
    info = svc.ensemble("ens", ["m:1", "m:2", "m:3"], weights="5,3,2")
    outs = outputs(svc, ["m:1", "m:2", "m:3"], x)
    np.testing.assert_allclose(np.asarray(svc.load_model(info.ref)(x)),
                               0.5 * outs[0] + 0.3 * outs[1] + 0.2 * outs[2], atol=1e-6)
    assert [m["weight"] for m in info.lineage["members"]] == pytest.approx([0.5, 0.3, 0.2])


@pytest.mark.parametrize(("weights", "message"), [
    ("1,2", "2 weights for 3 members"), ("1,-1,1", "non-negative"), ("0,0,0", "sum to 0"),
    ("a,b,c", "is not a number"), ("1,nan,1", "finite"),
])
def test_bad_weights_are_refused_before_anything_is_registered(svc, weights, message):
    with pytest.raises(InvalidInput, match=message):
        svc.ensemble("ens", "m:1,m:2,m:3", weights=weights)
    assert "ens" not in svc.store.names()


def test_vote_is_the_majority_with_ties_to_the_summed_probabilities():
    # Three members, four rows: a clear majority, a three-way tie, and two 2-1 votes.
    p = np.array([
        [[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]],
        [[0.7, 0.2, 0.1], [0.1, 0.45, 0.45], [0.3, 0.6, 0.1], [0.45, 0.1, 0.45]],
        [[0.1, 0.1, 0.8], [0.2, 0.2, 0.6], [0.9, 0.05, 0.05], [0.2, 0.1, 0.7]],
    ], dtype="float32")
    got = np.asarray(EnsembleCombine([1, 1, 1], mode="vote")([keras.ops.convert_to_tensor(a) for a in p]))
    # Row 1: a three-way tie (0, 1, 2); summed probabilities 0.8, 1.05, 1.15 -> class 2.
    # Row 3: member 2's own tie goes to argmax's first (0); votes 0:1, 2:2 -> class 2.
    assert got.argmax(axis=1).tolist() == [0, 2, 1, 2]
    assert np.all(got.sum(axis=1) == 1) and set(np.unique(got)) <= {0.0, 1.0}


def test_vote_ensemble_registers_and_equals_majority(svc):
    x = batch(64)
    info = svc.ensemble("vote", "m:1,m:2,m:3", vote=True)
    outs = outputs(svc, ["m:1", "m:2", "m:3"], x)
    labels = np.stack([o.argmax(1) for o in outs])  # (members, rows)
    counts = np.stack([(labels == c).sum(0) for c in range(3)], axis=1)
    summed = np.sum(outs, axis=0)
    want = np.where(counts == counts.max(1, keepdims=True), summed, -1).argmax(1)
    got = np.asarray(svc.load_model(info.ref)(x))
    assert got.argmax(1).tolist() == want.tolist()
    assert info.lineage["method"] == "vote"


def test_vote_needs_classifiers(tmp_path):
    s = Service(tmp_path / "s")
    for seed in range(2):
        keras.utils.set_random_seed(seed)
        s.register_model(keras.Sequential([keras.Input((4,), name="features"),
                                           keras.layers.Dense(1, name="y")]), "r")
    x = np.ones((3, 4), "float32")
    info = s.ensemble("mean", "r:1,r:2")  # regression: the mean
    np.testing.assert_allclose(np.asarray(s.load_model(info.ref)(x)),
                               np.mean(outputs(s, ["r:1", "r:2"], x), axis=0), atol=1e-6)
    with pytest.raises(InvalidInput, match="--vote needs classifiers"):
        s.ensemble("vote", "r:1,r:2", vote=True)


def test_an_ensemble_can_be_a_member(svc):
    x = batch()
    inner = svc.ensemble("inner", "m:1,m:2")
    outer = svc.ensemble("outer", [inner.ref, "m:3"], weights=[2, 1])
    outs = outputs(svc, ["m:1", "m:2", "m:3"], x)
    want = (2 / 3) * (outs[0] + outs[1]) / 2 + (1 / 3) * outs[2]
    np.testing.assert_allclose(np.asarray(svc.load_model(outer.ref)(x)), want, atol=1e-6)


# -- weight averaging ----------------------------------------------------------------------------
def test_average_weights_equals_mean_of_weights_including_bn_statistics(svc):
    x = batch()
    svc.load_model("m:1")(x, training=False)
    info = svc.ensemble("soup", "m:1,m:2,m:3", average_weights=True, weights="1,1,2")
    got = svc.load_model(info.ref)
    members = [svc.load_model(r) for r in ("m:1", "m:2", "m:3")]
    for i, w in enumerate(got.get_weights()):
        want = (
            0.25 * members[0].get_weights()[i]
            + 0.25 * members[1].get_weights()[i]
            + 0.5 * members[2].get_weights()[i]
        )
        np.testing.assert_allclose(w, want, atol=1e-6)
    bn = [v.path for v in got.non_trainable_weights]
    assert any("moving_mean" in p for p in bn) and any("moving_variance" in p for p in bn)
    assert info.params == svc.model_info("m:1").params  # one member's size at serving time
    assert info.lineage["method"] == "average_weights" and len(info.lineage["members"]) == 3


def test_average_weights_refuses_other_architectures(svc):
    svc.register_model(make_mlp(n_in=N_IN, hidden=(16, 13, 10), seed=5, batchnorm=True), "other")
    with pytest.raises(InvalidInput,
                       match=r"cannot average weights: member other:1 has another architecture .*13"):
        svc.ensemble("soup", "m:1,other:1", average_weights=True)
    svc.register_model(make_mlp(n_in=N_IN, seed=5), "nobn")  # same ins and outs, no batch normalisation
    with pytest.raises(InvalidInput, match="cannot average weights: member nobn:1 has another architecture"):
        svc.ensemble("soup", "m:1,nobn:1", average_weights=True)
    # averaged outputs need no shared architecture
    assert svc.ensemble("mixed", "m:1,other:1,nobn:1").ref == "mixed:1"


def test_vote_and_average_are_exclusive(svc):
    with pytest.raises(InvalidInput, match="either --vote or --average-weights"):
        svc.ensemble("x", "m:1,m:2", vote=True, average_weights=True)


# -- members that do not agree -------------------------------------------------------------------
def test_members_must_agree(svc):
    svc.register_model(make_mlp(n_in=9), "wide")
    with pytest.raises(IncompatibleShapes,
                       match=r"member wide:1 takes inputs \(features \[None, 9\] float32\); "
                       r"member m:1 takes \(features \[None, 2\] float32\)"):
        svc.ensemble("e", "m:1,wide:1")
    keras.utils.set_random_seed(0)
    renamed = keras.Sequential([keras.Input((N_IN,), name="pixels"),
                                keras.layers.Dense(3, activation="softmax")])
    svc.register_model(renamed, "renamed")
    with pytest.raises(IncompatibleShapes, match="member renamed:1 takes inputs \\(pixels"):
        svc.ensemble("e", "m:1,renamed:1")
    svc.register_model(make_mlp(n_in=N_IN, n_out=4), "four")
    with pytest.raises(IncompatibleShapes,
                       match=r"member four:1 gives output shape \[None, 4\]; member m:1 gives "
                       r"\[None, 3\]"):
        svc.ensemble("e", "m:1,four:1")
    svc.register_model(make_mlp(n_in=N_IN), "named", class_names=["a", "b", "c"])
    with pytest.raises(InvalidInput,
                       match=r"member named:1 has class names \['a', 'b', 'c'\]; member m:1 has None"):
        svc.ensemble("e", "m:1,named:1")
    with pytest.raises(InvalidInput, match="member m:2 is given twice"):
        svc.ensemble("e", "m:2,m:1,m:2")
    with pytest.raises(InvalidInput, match="at least two members"):
        svc.ensemble("e", "m:1")
    assert "e" not in svc.store.names()


# -- lineage, evaluate, report -------------------------------------------------------------------
def test_lineage_lists_every_member_and_reuse_lineage_follows_the_first(svc):
    info = svc.ensemble("ens", "m:3,m:1")
    lin = info.lineage
    assert lin["operation"] == "ensemble" and lin["base"] == {"name": "m", "version": 3}
    assert [(m["name"], m["version"], m["weight"], m["layer"]) for m in lin["members"]] == [
        ("m", 3, 0.5, "member1"), ("m", 1, 0.5, "member2")]
    assert [e["model"] for e in svc.lineage(info.ref)] == ["ens:1", "m:3"]
    out = CliRunner().invoke(cli, ["lineage", "ens:1", "--store", str(svc.store_root)],
                             catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[0] == "ens:1  ensemble (mean) of m:3 (0.5), m:1 (0.5); followed: m:3"


def test_evaluate_scores_each_member_and_report_states_the_spread(svc):
    info = svc.ensemble("ens", "m:1,m:2,m:3", data=BLOBS)
    check = info.metrics["ensemble_check"]
    assert [r["model"] for r in check["members"]] == ["m:1", "m:2", "m:3"] and check["metric"] == "accuracy"
    accs = [svc.evaluate_model(r, BLOBS)["accuracy"] for r in ("m:1", "m:2", "m:3")]
    assert [r["accuracy"] for r in check["members"]] == pytest.approx(accs)
    assert check["mean"] == pytest.approx(np.mean(accs)) and check["std"] == pytest.approx(np.std(accs))
    ev = svc.evaluate_model(info.ref, BLOBS)
    assert ev["accuracy"] == pytest.approx(check["ensemble"])
    assert [m["accuracy"] for m in ev["members"]] == pytest.approx(accs)
    assert check["beats_spread"] == (check["gain"] > check["std"] + 1e-9)
    out = CliRunner().invoke(cli, ["evaluate", info.ref, "--data", BLOBS, "--store", str(svc.store_root)],
                             catch_exceptions=False)
    assert out.exit_code == 0 and out.output.count("member m:") == 3, out.output
    out = CliRunner().invoke(cli, ["report", info.ref, "--store", str(svc.store_root)],
                             catch_exceptions=False)
    assert "Members and the ensemble:" in out.output and "members (mean ± std)" in out.output, out.output
    assert ("the ensemble beats" if check["beats_spread"] else "does not beat") in out.output


# -- CLI -----------------------------------------------------------------------------------------
def test_cli_ensemble_json_and_errors(svc):
    root = str(svc.store_root)
    out = CliRunner().invoke(cli, ["ensemble", "ens", "--members", "m:1,m:2", "--weights", "3,1", "--json",
                                   "--store", root], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    d = json.loads(out.output)
    assert d["ref"] == "ens:1" and d["lineage"]["operation"] == "ensemble"
    assert [m["weight"] for m in d["lineage"]["members"]] == [0.75, 0.25]
    out = CliRunner().invoke(cli, ["ensemble", "ens", "--members", "m:1,m:2", "--vote", "--store", root])
    assert out.exit_code == 0 and out.output.startswith("Registered ens:2: majority vote of m:1 (0.5), "
                                                        "m:2 (0.5)")
    out = CliRunner().invoke(cli, ["ensemble", "ens", "--members", "m:1,m:9", "--store", root])
    assert out.exit_code == 1 and out.output.startswith("Error: ") and "m:9" in out.output
    assert len(out.output.strip().splitlines()) == 1
    out = CliRunner().invoke(cli,
                             ["ensemble", "soup", "--members", "m:1,m:2", "--weights", "1", "--store", root])
    assert (
        out.exit_code == 1 and out.output.strip() == "Error: 1 weights for 2 members; expected one per member"
    )


def test_cli_subprocess_ensemble_average_weights(svc):
    proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), "ensemble", "soup", "--members",
                           "m:1,m:2,m:3", "--average-weights", "--store", str(svc.store_root)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Registered soup:1: mean of weights of m:1")


# -- training --------------------------------------------------------------------------------------
def test_train_seeds_ensemble_registers_seeds_and_their_ensemble(svc):
    root = str(svc.store_root)
    out = CliRunner().invoke(cli, ["train", "m:1", "--data", BLOBS, "--val-split", "0.3", "--epochs", "2",
                                   "--seeds", "3", "--ensemble", "--quiet", "--json", "--store", root],
                             catch_exceptions=False)
    assert out.exit_code == 0, out.output
    d = json.loads(out.output)
    assert d["model"] == "m:4" and d["seed_models"] == ["m:4", "m:5", "m:6"] and d["ensemble"] == "m:7"
    assert [v.version for v in svc.model_versions("m")] == [1, 2, 3, 4, 5, 6, 7]  # 3 seeds + 1 ensemble
    assert [svc.model_info(f"m:{v}").settings["seed"] for v in (4, 5, 6)] == [0, 1, 2]
    ens = svc.model_info("m:7")
    assert [f"{m['name']}:{m['version']}" for m in ens.lineage["members"]] == ["m:4", "m:5", "m:6"]
    check = ens.metrics["ensemble_check"]
    assert check["samples"] == 27 and len(check["members"]) == 3
    seed_check = svc.model_info("m:4").metrics["ensemble_check"]
    assert [r["model"] for r in seed_check["members"]] == ["seed 0", "seed 1", "seed 2"]
    assert seed_check["ensemble"] == pytest.approx(check["ensemble"])  # the same mean on the same split
    out = CliRunner().invoke(cli, ["report", "m:4", "--store", root], catch_exceptions=False)
    assert "Seeds and their ensemble:" in out.output, out.output


def test_ensemble_needs_two_seeds(svc):
    with pytest.raises(InvalidInput, match="--ensemble needs --seeds 2 or more"):
        svc.train_model("m:1", BLOBS, options={"epochs": 1}, ensemble=True)
    assert [v.version for v in svc.model_versions("m")] == [1, 2, 3]


def test_advise_register_ensemble(tmp_path):
    s = Service(tmp_path / "adv")
    s.register_model(make_mlp(n_in=N_IN, hidden=(12, 10)), "base")
    advice = s.advise("base", BLOBS, depths="0,1", seeds=2, epochs=2, patience=2, finetune=False,
                      register_ensemble="pick")
    assert advice.registered_ensemble == "pick:3" and advice.to_dict()["registered_ensemble"] == "pick:3"
    ens = s.model_info("pick:3")
    assert [f"{m['name']}:{m['version']}" for m in ens.lineage["members"]] == ["pick:1", "pick:2"]
    assert [s.model_info(f"pick:{v}").lineage["advice"]["seed"] for v in (1, 2)] == [0, 1]
    check = ens.metrics["ensemble_check"]
    scores = [r.score for r in advice.kept_seeds]
    assert [r["accuracy"] for r in check["members"]] == pytest.approx(scores)  # scored on the advisor's split
    with pytest.raises(InvalidInput, match="--register-ensemble needs --seeds 2"):
        s.advise("base", BLOBS, seeds=1, register_ensemble="pick")
    s.close()


def test_register_ensemble_choice_refuses_without_seeds():
    from reuse.advise.register import register_ensemble_choice

    class NoAdvice:
        recommendation = None
        kept_seeds: list = []

    with pytest.raises(FailedPrecondition, match="nothing to register"):
        register_ensemble_choice(None, NoAdvice(), "x", data="d", val=None)  # type: ignore[arg-type]


# -- gRPC ------------------------------------------------------------------------------------------
def test_grpc_ensemble_job_then_model_infer(tmp_path):
    service = Service(tmp_path / "served")
    for seed in range(2):
        service.register_model(make_mlp(seed=seed), "mlp")
    server = start_in_thread(service, ServerConfig(port=0))
    channel, inference, api = stubs(server.target)
    try:
        err = rpc_error(api.StartJob, pb.StartJobRequest(kind="ensemble", params_json=json.dumps(
            {"name": "ens", "members": ["mlp:1", "mlp:7"]})))
        assert err.code() == CODE.NOT_FOUND and "mlp:7" in err.details()
        err = rpc_error(api.StartJob, pb.StartJobRequest(kind="ensemble", params_json=json.dumps(
            {"name": "ens", "members": ["mlp:1", "mlp:2"], "weights": [1, -1]})))
        assert err.code() == CODE.INVALID_ARGUMENT and "non-negative" in err.details()
        err = rpc_error(api.StartJob, pb.StartJobRequest(kind="ensemble", params_json=json.dumps(
            {"name": "ens", "members": "mlp:1,mlp:2"})))
        assert err.code() == CODE.INVALID_ARGUMENT and "expected a list of strings" in err.details()
        job = api.StartJob(pb.StartJobRequest(kind="ensemble", params_json=json.dumps(
            {"name": "ens", "members": ["mlp:1", "mlp:2"], "weights": [3, 1]})))
        wait_until(lambda: api.GetJob(pb.GetJobRequest(id=job.id)).state in ("succeeded", "failed"),
                   timeout=60)
        done = api.GetJob(pb.GetJobRequest(id=job.id))
        assert done.state == "succeeded" and done.model == "ens:1", done.error
        x = batch(5, n_in=8)
        resp = inference.ModelInfer(infer_request(x, model="ens"))
        assert resp.outputs[0].name == "output" and list(resp.outputs[0].shape) == [5, 3]
        got = np.frombuffer(resp.raw_output_contents[0], dtype="float32").reshape(5, 3)
        outs = outputs(service, ["mlp:1", "mlp:2"], x)
        np.testing.assert_allclose(got, 0.75 * outs[0] + 0.25 * outs[1], atol=1e-5)
        # Training with --ensemble over the server: a train job through StartJob.
        service.register_model(make_mlp(n_in=N_IN), "blob")
        out = CliRunner().invoke(cli, ["train", "blob:1", "--data", BLOBS, "--val-split", "0.3", "--epochs",
                                       "1", "--seeds", "2", "--ensemble", "--quiet", "--json", "--server",
                                       server.target],
                                 catch_exceptions=False)
        assert out.exit_code == 0, out.output
        d = json.loads(out.output)
        assert d["seed_models"] == ["blob:2", "blob:3"] and d["ensemble"] == "blob:4"
        # The CLI's --server path runs the same job.
        out = CliRunner().invoke(cli, ["ensemble", "soup", "--members", "mlp:1,mlp:2", "--average-weights",
                                       "--server", server.target], catch_exceptions=False)
        assert out.exit_code == 0 and out.output.startswith("Registered soup:1: mean of weights"), out.output
    finally:
        channel.close()
        server.stop()
        service.close()
