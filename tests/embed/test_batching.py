import random

import pytest

from embednv.embed.batching import padding_efficiency, plan_batches


def test_every_index_exactly_once_and_budget_respected():
    rng = random.Random(0)
    lengths = [rng.randint(1, 600) for _ in range(1000)]
    batches = plan_batches(lengths, batch_tokens=4096)
    seen = sorted(i for b in batches for i in b.indices)
    assert seen == list(range(1000))
    for batch in batches:
        assert batch.width == max(lengths[i] for i in batch.indices)
        assert batch.padded_tokens <= 4096


def test_sequence_longer_than_budget_gets_its_own_batch():
    batches = plan_batches([10, 5000, 20], batch_tokens=1000, min_efficiency=0.0)
    assert [b.indices for b in batches] == [[1], [2, 0]]


def test_longest_first():
    batches = plan_batches([3, 9, 5, 7], batch_tokens=18, min_efficiency=0.0)
    assert [b.indices for b in batches] == [[1, 3], [2, 0]]


def test_efficiency_floor_closes_a_batch_before_padding_piles_up():
    # 100 + 50 padded to 2 x 100 is 0.75 efficient: the 50 starts a new batch.
    batches = plan_batches([100, 50, 49], batch_tokens=10_000, min_efficiency=0.97)
    assert [b.indices for b in batches] == [[0], [1, 2]]
    for batch in batches:
        assert sum([100, 50, 49][i] for i in batch.indices) >= 0.97 * batch.padded_tokens


def test_order_restored_by_indices():
    lengths = [5, 1, 4, 2, 3]
    out = [None] * len(lengths)
    for batch in plan_batches(lengths, batch_tokens=6):
        for i in batch.indices:
            out[i] = lengths[i] * 10  # what a model would return per position
    assert out == [50, 10, 40, 20, 30]


def test_sorting_beats_file_order_on_padding():
    rng = random.Random(1)
    lengths = [int(rng.lognormvariate(5, 1)) + 1 for _ in range(2000)]
    sorted_eff = padding_efficiency(lengths, plan_batches(lengths, 65_536))
    assert sorted_eff >= 0.97


def test_rejects_bad_budget():
    with pytest.raises(ValueError, match="batch_tokens must be positive"):
        plan_batches([1], 0)
