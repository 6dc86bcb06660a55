"""Advisor candidates by block (``--blocks 'block_{1..16}_'``) and explicit ``;``-separated scopes."""

from __future__ import annotations

import json

import keras
import pytest
from advise_helpers import shared_env
from click.testing import CliRunner

from reuse.advise.plan import MAX_CANDIDATES, block_plans, expand_blocks, plan_candidates, split_scopes
from reuse.cli import cli
from reuse.errors import InvalidInput, NoLayersMatched
from reuse.graph.select import select_layers

STEM = ["Conv1", "bn_Conv1", "Conv1_relu", "expanded_conv_project"]
MOBILE = [*STEM, "block_1_expand", "block_1_relu", "block_1_project_BN",
          "block_2_expand", "block_2_drop", "block_2_project_BN", "block_2_add",
          "block_3_expand", "block_3_add", "Conv_1", "out_relu", "predictions"]
RESNET = ["conv1_conv", "conv1_bn", "pool1_pool", "conv2_block1_1_conv", "conv2_block1_out",
          "conv2_block2_1_conv", "conv2_block2_out", "conv3_block1_1_conv", "conv3_block1_out",
          "avg_pool", "predictions"]
VGG = ["block1_conv1", "block1_pool", "transition", "block2_conv1", "block2_pool", "flatten", "fc"]
STEM_SCOPE = "Conv1|bn_Conv1|Conv1_relu|expanded_conv_project"

BLOCK_CASES = [
    # (names, pattern, identity-at-inference layers, match, [(scope, last layer), ...])
    (MOBILE, "block_{1..3}_", {"block_2_drop"}, "full", [
        (f"{STEM_SCOPE}|block_1_.*", "block_1_project_BN"),
        # block 2 holds a dropout layer, which is left out: its layers are listed by name
        (f"{STEM_SCOPE}|block_1_.*|block_2_expand|block_2_project_BN|block_2_add", "block_2_add"),
        (f"{STEM_SCOPE}|block_1_.*|block_2_expand|block_2_project_BN|block_2_add|block_3_.*", "block_3_add"),
    ]),
    (MOBILE, "block_{2..3}_", set(), "full", [  # block 1 is below the range: part of the stem
        (f"{STEM_SCOPE}|block_1_.*|block_2_.*", "block_2_add"),
        (f"{STEM_SCOPE}|block_.*", "block_3_add"),  # every block_ layer is in (no dropout left out here)
    ]),
    (MOBILE, "block_{1..1}_", set(), "prefix", [(f"(?:{STEM_SCOPE}|block_1_.*)$", "block_1_project_BN")]),
    # Other layers are written as PREFIX.* too where a prefix ending in "_" is shared by two layers or more,
    # all of them in the candidate (conv1_conv, conv1_bn); a block's prefix may hold a single layer.
    (RESNET, "conv{2..3}_", set(), "full", [
        ("conv1_.*|pool1_pool|conv2_.*", "conv2_block2_out"),
        ("conv1_.*|pool1_pool|conv2_.*|conv3_.*", "conv3_block1_out"),
    ]),
    (RESNET, "conv3_block{1..1}_", set(), "full",
     [("conv1_.*|pool1_pool|conv2_.*|conv3_.*", "conv3_block1_out")]),
    (RESNET, "conv2_block{1..2}_", set(), "full", [
        ("conv1_.*|pool1_pool|conv2_block1_.*", "conv2_block1_out"),
        ("conv1_.*|pool1_pool|conv2_.*", "conv2_block2_out"),  # every conv2_ layer is in: conv2_.* says it
    ]),
    (VGG, "block{1..2}_", set(), "full", [  # a layer between blocks goes with the block above it
        ("block1_.*", "block1_pool"),
        ("block1_.*|transition|block2_.*", "block2_pool"),
    ]),
]


@pytest.mark.parametrize(("names", "pattern", "skip", "match", "expected"), BLOCK_CASES)
def test_block_candidates(names, pattern, skip, match, expected):
    plans, notes = block_plans(names, pattern, skip=skip, match=match)
    assert [(p.scope, p.layers[-1]) for p in plans] == expected
    assert [p.depth for p in plans] == list(range(1, len(expected) + 1)) and notes == []
    for p in plans:
        upto = names[:names.index(p.layers[-1]) + 1]
        # everything up to the block, less identity
        assert p.layers == tuple(n for n in upto if n not in skip)
        # the scope selects exactly that
        assert select_layers(names, p.scope, match=match).matched == p.layers


BLOCK_ERRORS = [
    (MOBILE, "block_{3..1}_", InvalidInput,
     "invalid block range {3..1} in 'block_{3..1}_': expected LO <= HI"),
    (MOBILE, "block_1_", InvalidInput,
     "invalid block pattern 'block_1_': expected exactly one {LO..HI} range, "
                                       "found 0; e.g. 'block_{1..16}_'"),
    (MOBILE, "b{1..2}_{1..2}", InvalidInput, "expected exactly one {LO..HI} range, found 2"),
    (MOBILE, "block_{1..x}_", InvalidInput, "found 0"),
    (MOBILE, f"block_{{1..{MAX_CANDIDATES + 1}}}_", InvalidInput,
     f"block pattern 'block_{{1..51}}_' gives 51 candidates; at most {MAX_CANDIDATES} are allowed"),
    (MOBILE, "block_{1..4}_", NoLayersMatched,
     "block 4 of 'block_{1..4}_': no layer name starts with 'block_4_'; "
                                               "layers are: Conv1, bn_Conv1"),
    ([*(f"block{k}_a" for k in range(1, 11)), "top"], "block{1..10}", InvalidInput,
     "layer block10_a is in block 1 ('block1') and in block 10 ('block10') of 'block{1..10}': end the "
     "pattern with the separator that follows the number"),
    (["a1_x", "a2_x", "a1_y", "top"], "a{1..2}_", InvalidInput,
     "blocks 1 and 2 of 'a{1..2}_' interleave in the base: layer a2_x of block 2 comes before layer a1_y of "
     "block 1; give the candidates as --scopes instead"),
]


@pytest.mark.parametrize(("names", "pattern", "error", "message"), BLOCK_ERRORS)
def test_block_refusals(names, pattern, error, message):
    with pytest.raises(error) as exc:
        block_plans(names, pattern)
    assert message in str(exc.value)


def test_expand_blocks():
    assert expand_blocks("block_{1..3}_") == [(1, "block_1_"), (2, "block_2_"), (3, "block_3_")]
    assert expand_blocks("{0..1}") == [(0, "0"), (1, "1")]


def test_identity_layers_stay_in_when_listing_them_out_is_too_long():
    long = "witharatherlonglayername"  # no "_": no shorter prefix than b1_ (which holds b1_drop) covers them
    names, skip = [], set()
    for k in (1, 2, 3):
        names += [f"b{k}_{i}{long}" for i in range(12)] + [f"b{k}_drop"]
        skip.add(f"b{k}_drop")
    plans, notes = block_plans([*names, "top"], "b{1..3}_", skip=skip)
    assert plans[0].scope.startswith("b1_0with") and "b1_drop" not in plans[0].layers
    assert plans[2].scope == "b1_.*|b2_.*|b3_.*" and {"b1_drop", "b2_drop", "b3_drop"} <= set(plans[2].layers)
    assert any(n.startswith("block 3's candidate also reuses 3 layer(s) that are the identity at inference "
                            "(b1_drop, b2_drop, b3_drop)") for n in notes)


@pytest.mark.parametrize(("text", "expected"), [
    ("hidden1;hidden[12]", ["hidden1", "hidden[12]"]),
    ("a,b;c{1,2}; d", ["a,b", "c{1,2}", "d"]),  # with ';' every comma belongs to a pattern
    (r"a\;b,c", [r"a\;b", "c"]),  # an escaped ';' does not split
    ("x{1;2},y", ["x{1;2}", "y"]),  # nor one inside braces
])
def test_split_scopes_with_semicolons(text, expected):
    assert split_scopes(text) == expected


def _blocky(store):
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,), name="x")
    h = keras.layers.Dense(5, name="stem")(inp)
    for k in (1, 2):
        h = keras.layers.Dense(5, name=f"block_{k}_dense")(h)
        h = keras.layers.Dropout(0.1, name=f"block_{k}_drop")(h)
        h = keras.layers.Activation("relu", name=f"block_{k}_relu")(h)
    store.register(keras.Model(inp, keras.layers.Dense(2, activation="softmax", name="out")(h)), "blocky")


def test_plan_candidates_by_block(store):
    _blocky(store)
    plan = plan_candidates(store, "blocky", blocks="block_{1..2}_")
    assert plan.depths == (0, 1, 2) and plan.max_depth == 2
    assert plan.plans[1].scope == "stem|block_1_dense|block_1_relu"
    assert plan.plans[2].layers == ("stem", "block_1_dense", "block_1_relu", "block_2_dense", "block_2_relu")
    assert plan.scratch.layers == plan.plans[2].layers
    assert plan_candidates(store, "blocky", blocks="block_{1..2}_", depths="2").depths == (2,)
    with pytest.raises(InvalidInput, match="give either scopes or a block pattern, not both"):
        plan_candidates(store, "blocky", blocks="block_{1..2}_", scopes=["stem"])
    with pytest.raises(InvalidInput,
                       match="depth 3 is out of range: block pattern 'block_{1..2}_' \\(2 block"):
        plan_candidates(store, "blocky", blocks="block_{1..2}_", depths="3")
    with pytest.raises(InvalidInput, match=f"51 scopes given; at most {MAX_CANDIDATES} candidates"):
        plan_candidates(store, "blocky", scopes=["stem"] * 51)


# -- end to end, on the advisor's tiny chain base ---------------------------------------------------
QUICK = ["--seeds", "1", "--epochs", "3", "--patience", "2", "--lr", "0.03", "--batch-size", "16",
         "--no-finetune", "--quiet"]


def _advise(env, *args, ok=True):
    result = CliRunner().invoke(cli, ["advise", "--from", "blind", "--data", env.files["b_train"], "--val",
                                      env.files["b_val"], *args, *QUICK, "--store", str(env.store)])
    assert (result.exit_code == 0) == ok, result.output
    return result


def test_advise_with_semicolon_scopes_and_blocks(tmp_path_factory):
    env = shared_env(tmp_path_factory)
    d = json.loads(_advise(env, "--scopes", "hidden1;hidden[12]", "--json").stdout)
    assert [(r["candidate"], r["scope"], r["layers"]) for r in d["rows"]] == [
        ("scratch", "hidden[12]", ["hidden1", "hidden2"]), ("reuse 1 frozen", "hidden1", ["hidden1"]),
        ("reuse 2 frozen", "hidden[12]", ["hidden1", "hidden2"])]
    assert d["settings"]["scopes"] == ["hidden1", "hidden[12]"] and "blocks" not in d["settings"]

    out = _advise(env, "--blocks", "hidden{1..2}", "--depths", "1..2").stdout
    assert "hidden1,hidden2 [hidden1.*|hidden2.*]" in out and "reuse 1 frozen  hidden1 " in out


@pytest.mark.parametrize(("args", "error"), [
    (["--blocks", "hidden{2..1}"], "Error: invalid block range {2..1} in 'hidden{2..1}': expected LO <= HI"),
    (["--blocks", "hidden{1..3}"], "Error: block 3 of 'hidden{1..3}': no layer name starts with 'hidden3'"),
    (["--blocks", "hidden{1..2}", "--scopes", "hidden1"],
     "Error: give either scopes or a block pattern, not both"),
])
def test_advise_block_errors_come_before_any_training(tmp_path_factory, args, error):
    env = shared_env(tmp_path_factory)
    result = _advise(env, *args, ok=False)
    assert result.exit_code == 1 and "advise:" not in result.output
    assert [x for x in result.output.splitlines() if x.startswith("Error: ")][0].startswith(error)
