from __future__ import annotations

import pytest

from reuse.advise import Candidate, CandidateResult, recommend


def res(depth, ft, *scores):
    return CandidateResult(Candidate(depth, ft), tuple(scores))


CASES = [
    # (results, expected (depth, finetune), reuse_helps)
    ([res(0, False, .80, .82, .81), res(1, False, .90, .91, .90), res(2, False, .91, .90, .92)],
     (1, False), True),
    ([res(0, False, .90, .91, .90), res(1, False, .905, .90, .91), res(2, True, .91, .90, .905)],
     (0, False), False),
    ([res(0, False, .70, .71, .70), res(1, False, .80, .81, .80), res(2, False, .90, .91, .90)],
     (2, False), True),
    ([res(0, False, .70, .90, .50), res(1, False, .75, .76, .74)], (0, False), False),  # noisy scratch
    ([res(0, False, .70, .71, .70), res(1, False, .75, .76, .74), res(1, True, .85, .86, .85)],
     (1, True), True),
]


@pytest.mark.parametrize(("results", "expected", "helps"), CASES)
def test_recommendation(results, expected, helps):
    rec = recommend(results)
    assert (rec.choice.candidate.depth, rec.choice.candidate.finetune) == expected
    assert rec.reuse_helps is helps
    if not helps:
        assert "reuse does not help here" in rec.reason


def test_lower_is_better_for_losses():
    rec = recommend([res(0, False, .50, .52, .51), res(1, False, .30, .31, .30)], higher_is_better=False)
    assert rec.choice.candidate.depth == 1


def test_nan_candidates_are_ignored_and_all_nan_refused():
    rec = recommend([res(0, False, .5, .5), res(1, False, float("nan"), .9)])
    assert rec.choice.candidate.depth == 0
    with pytest.raises(ValueError, match="no candidate"):
        recommend([res(1, False, float("nan"))])
