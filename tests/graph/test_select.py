"""Scope matching: table-driven cases for full and prefix mode, errors, and linear-time matching."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reuse.errors import InvalidPattern, NoLayersMatched
from reuse.graph.select import MAX_PATTERN_LENGTH, compile_scope, scope_matches, select_layers

NAMES = ["hidden1", "hidden2", "hidden3", "hidden10", "hidden21", "bn1", "conv1", "conv12", "conv1_bn",
         "block1.conv", "block1xconv", "Output", "output"]

# (pattern, match mode, expected matched names in model order)
REGEX_CASES = [
    # full match: the whole name must match
    ("hidden[123]", "full", ["hidden1", "hidden2", "hidden3"]),
    ("hidden1", "full", ["hidden1"]),
    ("hidden.*", "full", ["hidden1", "hidden2", "hidden3", "hidden10", "hidden21"]),
    # prefix match: TensorFlow 1 scope behaviour (re.match from the start)
    ("hidden[123]", "prefix", ["hidden1", "hidden2", "hidden3", "hidden10", "hidden21"]),
    ("hidden1", "prefix", ["hidden1", "hidden10"]),
    ("conv", "prefix", ["conv1", "conv12", "conv1_bn"]),
    ("1", "prefix", []),  # not a search: must match at the start
    # character classes
    (r"conv\d+", "full", ["conv1", "conv12"]),
    (r"conv\d", "prefix", ["conv1", "conv12", "conv1_bn"]),
    (r"[a-z]+\d_[a-z]+", "full", ["conv1_bn"]),
    (r"hidden[^1]", "full", ["hidden2", "hidden3"]),
    (r"block1\.conv", "full", ["block1.conv"]),
    ("block1.conv", "full", ["block1.conv", "block1xconv"]),
    # alternation: precedence covers the whole pattern in full mode
    ("hidden1|output", "full", ["hidden1", "output"]),
    ("output|hidden1", "full", ["hidden1", "output"]),  # model order, not pattern order
    ("hidden1|bn", "prefix", ["hidden1", "hidden10", "bn1"]),
    ("hidden(1|2)", "full", ["hidden1", "hidden2"]),
    # anchors
    ("^hidden1$", "prefix", ["hidden1"]),
    ("hidden1$", "prefix", ["hidden1"]),
    ("^hidden1", "full", ["hidden1"]),
    (r"hidden\d{2}", "full", ["hidden10", "hidden21"]),
    # case sensitivity and flags
    ("output", "full", ["output"]),
    ("(?i)output", "full", ["Output", "output"]),
    # a pattern that can match the empty string selects everything in prefix mode, nothing in full mode
    ("x*", "prefix", NAMES),
    (".*", "full", NAMES),
]


@pytest.mark.parametrize(("pattern", "match", "expected"), REGEX_CASES)
def test_regex_cases(pattern, match, expected):
    sel = select_layers(NAMES, pattern, match=match, require_match=False)
    assert list(sel.matched) == expected
    assert list(sel.unmatched) == [n for n in NAMES if n not in expected]
    assert (sel.pattern, sel.match) == (pattern, match)
    if expected:
        assert select_layers(NAMES, pattern, match=match).matched == sel.matched


@pytest.mark.parametrize(("pattern", "fragment"), [
    ("hidden[12", "missing ]"),
    ("(hidden", "missing )"),
    (r"(a)\1", "invalid escape"),  # backreferences are not regular: RE2 refuses them
    ("(?=a)", "invalid perl operator"),  # so are lookarounds
    ("a{2000}", "repetition"),
    ("*", "no argument for repetition"),
])
def test_invalid_pattern_repeats_it(pattern, fragment):
    with pytest.raises(InvalidPattern) as exc:
        select_layers(NAMES, pattern)
    assert f"invalid scope pattern {pattern!r}" in str(exc.value)
    assert fragment in str(exc.value).lower()


@pytest.mark.parametrize("pattern", ["", None, 7])
def test_empty_or_non_string_pattern(pattern):
    with pytest.raises(InvalidPattern, match="expected a non-empty regular expression"):
        compile_scope(pattern)


def test_too_long_pattern():
    pattern = "a" * (MAX_PATTERN_LENGTH + 1)
    with pytest.raises(InvalidPattern, match=r"too long \(1001 characters, at most 1000\): 'aaaa"):
        select_layers(NAMES, pattern)
    assert select_layers(["a" * MAX_PATTERN_LENGTH], "a" * MAX_PATTERN_LENGTH).matched


def test_no_match_lists_the_layer_names():
    with pytest.raises(NoLayersMatched) as exc:
        select_layers(["hidden1", "hidden2", "output"], "hidden[34]")
    assert str(exc.value) == ("scope 'hidden[34]' (full match) matched no layer; "
                              "layers are: hidden1, hidden2, output")
    assert isinstance(exc.value, ValueError)


def test_dry_run_returns_matched_and_unmatched_without_error():
    sel = select_layers(["a1", "b1"], "c.*", require_match=False)
    assert sel.matched == () and sel.unmatched == ("a1", "b1")


def test_unknown_match_mode():
    with pytest.raises(InvalidPattern, match="invalid match mode 'suffix': expected one of full, prefix"):
        select_layers(NAMES, "hidden1", match="suffix")
    with pytest.raises(InvalidPattern):
        scope_matches(compile_scope("a"), "a", "search")


def test_pathological_pattern_runs_in_linear_time():
    # With Python's backtracking `re`, (a+)+$ against 100,000 'a's and a final 'b' does not finish in
    # any reasonable time; RE2 answers in milliseconds. Run it in a child process so a regression fails
    # the test (timeout) rather than hanging the suite.
    code = (
        "from reuse.graph.select import select_layers\n"
        "name = 'a' * 100_000 + 'b'\n"
        "for mode in ('full', 'prefix'):\n"
        "    s = select_layers([name, 'aaa'], '(a+)+$', match=mode, require_match=False)\n"
        "    print(mode, len(s.matched))\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["full", "1", "prefix", "1"]
