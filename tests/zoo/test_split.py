"""The search / held-out split: seeded, stratified by class, disjoint, validated in one line."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from xaiopt.errors import ConfigError
from xaiopt.zoo.split import Split, holdout_count, holdout_split

# an unbalanced class list: 10, 5, 3 and 2 samples, interleaved as a dataset would give them
UNBALANCED = [0] * 10 + [1] * 5 + [2] * 3 + [3] * 2
UNBALANCED = [UNBALANCED[i] for i in torch.randperm(20, generator=torch.Generator().manual_seed(3)).tolist()]


def test_split_is_disjoint_and_covers_every_sample():
    s = holdout_split(UNBALANCED, 0.3, seed=0)
    assert set(s.search).isdisjoint(s.holdout)
    assert sorted(s.search + s.holdout) == list(range(20))
    assert list(s.search) == sorted(s.search) and list(s.holdout) == sorted(s.holdout)
    assert len(s.holdout) == 6  # round(0.3 * 20)


def test_split_is_stratified_on_an_unbalanced_class_list():
    s = holdout_split(UNBALANCED, 0.3, seed=0)
    held = Counter(UNBALANCED[i] for i in s.holdout)
    # by hand: quotas 0.3 * (10, 5, 3, 2) = 3, 1.5, 0.9, 0.6 -> floors 3, 1, 0, 0 (4); the two left go to
    # the largest remainders, class 2 (0.9) then class 3 (0.6)
    assert dict(held) == {0: 3, 1: 1, 2: 1, 3: 1}
    searched = Counter(UNBALANCED[i] for i in s.search)
    assert all(searched[c] >= 1 for c in range(4))  # every class is searched on


def test_a_class_keeps_one_search_sample_and_its_share_moves_on():
    labels = [0, 0, 1, 1, 1, 1, 1, 1]
    s = holdout_split(labels, 4, seed=1)
    held = Counter(labels[i] for i in s.holdout)
    # quotas 1 and 3 fit the caps (1 and 5): no move needed
    assert dict(held) == {0: 1, 1: 3}
    s = holdout_split([0, 1, 1, 1, 1, 1], 2, seed=0)
    # class 0 has one sample: it stays in the search set, its 0.33 share goes to class 1
    assert Counter([0, 1, 1, 1, 1, 1][i] for i in s.holdout) == {1: 2}


def test_split_is_deterministic_for_a_seed_and_moves_with_it():
    a = holdout_split(UNBALANCED, 0.3, seed=7)
    b = holdout_split(torch.tensor(UNBALANCED), 0.3, seed=7)
    assert a == b
    others = {holdout_split(UNBALANCED, 0.3, seed=s).holdout for s in range(8)}
    assert len(others) > 1
    assert Split.from_dict(a.to_dict()) == a


def test_count_and_fraction_agree():
    assert holdout_split(UNBALANCED, 6, seed=0) == holdout_split(UNBALANCED, 0.3, seed=0)
    assert holdout_count(0.25, 10) == 3 and holdout_count(0.24, 10) == 2 and holdout_count(3, 10) == 3


@pytest.mark.parametrize("holdout, message", [
    (0.0, "valid: 0 < f < 1"), (1.0, "valid: 0 < f < 1"), (-0.2, "valid: 0 < f < 1"),
    (0, "valid: 1 to 19"), (20, "valid: 1 to 19"), (0.01, "valid: 1 to 19"), (True, "not a number"),
    ("0.3", "not a number"),
])
def test_invalid_holdout_is_one_line(holdout, message):
    with pytest.raises(ConfigError, match=message) as err:
        holdout_split(UNBALANCED, holdout, seed=0)
    assert "\n" not in str(err.value)


def test_too_many_held_out_for_the_classes_is_refused():
    with pytest.raises(ConfigError, match="leave a class without search samples"):
        holdout_split([0, 0, 1, 1, 2, 2], 4, seed=0)
