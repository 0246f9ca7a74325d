"""MixedBatchSampler: every batch mixes labelled and pseudo-labelled indices, on one rank or several."""

from __future__ import annotations

from collections import Counter

import pytest
from lightning_fabric.utilities.distributed import DistributedSamplerWrapper

from epspp.data.sampler import MixedBatchSampler

LABELED = list(range(100, 103))  # 3 labelled indices
UNLABELED = list(range(20))  # 20 pseudo-labelled indices


def _chunks(indices: list[int], size: int) -> list[list[int]]:
    assert len(indices) % size == 0
    return [indices[i : i + size] for i in range(0, len(indices), size)]


@pytest.mark.parametrize("batch_size, per_batch", [(5, 2), (4, 1), (8, 6), (2, 1)])
def test_every_batch_has_labeled_per_batch_labeled_indices(batch_size, per_batch):
    sampler = MixedBatchSampler(LABELED, UNLABELED, batch_size, per_batch)
    indices = list(sampler)
    per_pseudo = batch_size - per_batch
    num_batches = max(1, 20 // per_pseudo)
    assert len(sampler) == len(indices) == num_batches * batch_size
    for batch in _chunks(indices, batch_size):
        assert sum(i in LABELED for i in batch) == per_batch
        assert sum(i in UNLABELED for i in batch) == per_pseudo
    # pseudo-labelled indices are not repeated within an epoch while there are enough of them
    pseudo = [i for i in indices if i in UNLABELED]
    assert len(set(pseudo)) == len(pseudo) == num_batches * per_pseudo


def test_labeled_set_is_cycled_and_reshuffled_per_pass():
    sampler = MixedBatchSampler(LABELED, UNLABELED, batch_size=5, labeled_per_batch=2, seed=3)
    indices = list(sampler)
    labeled = [i for i in indices if i in LABELED]
    assert len(labeled) == 6 * 2  # 20 // 3 = 6 batches
    assert Counter(labeled) == dict.fromkeys(LABELED, 4)  # 12 slots / 3 ids: each used 4 times
    passes = _chunks(labeled, 3)
    assert all(sorted(p) == LABELED for p in passes)  # every pass is a permutation of the set
    assert len({tuple(p) for p in passes}) > 1  # reshuffled between passes


def test_few_pseudo_labeled_samples_give_one_full_batch():
    sampler = MixedBatchSampler([7], [1, 2], batch_size=6, labeled_per_batch=2)
    indices = list(sampler)
    assert len(sampler) == len(indices) == 6
    assert Counter(indices) == {7: 2, 1: 2, 2: 2}


def test_deterministic_per_seed_and_epoch():
    def draw(seed, epoch=None):
        sampler = MixedBatchSampler(LABELED, UNLABELED, 5, 2, seed=seed)
        if epoch is not None:
            sampler.set_epoch(epoch)
        return list(sampler)

    first = draw(0)
    assert draw(0) == first and draw(0, epoch=0) == first
    assert draw(1) != first
    assert draw(0, epoch=1) != first
    assert draw(0, epoch=1) == draw(0, epoch=1)
    for batch in _chunks(draw(0, epoch=1), 5):  # another epoch's order is still mixed
        assert sum(i in LABELED for i in batch) == 2
    sampler = MixedBatchSampler(LABELED, UNLABELED, 5, 2)
    sampler.set_epoch(2)
    sampler.set_epoch(0)
    assert list(sampler) == first


@pytest.mark.parametrize(
    "labeled, unlabeled, batch_size, per_batch, match",
    [
        (LABELED, UNLABELED, 4, 0, "labeled_per_batch must be in 1..3"),
        (LABELED, UNLABELED, 4, 4, "labeled_per_batch must be in 1..3"),
        ([], UNLABELED, 4, 2, "got 0 and 20"),
        (LABELED, [], 4, 2, "got 3 and 0"),
    ],
)
def test_invalid_arguments(labeled, unlabeled, batch_size, per_batch, match):
    with pytest.raises(ValueError, match=match):
        MixedBatchSampler(labeled, unlabeled, batch_size, per_batch)


@pytest.fixture
def two_ranks(monkeypatch):
    monkeypatch.setattr(MixedBatchSampler, "_world_size", staticmethod(lambda: 2))


def test_two_ranks_strided_subsampling_keeps_batches_mixed(two_ranks):
    sampler = MixedBatchSampler(LABELED, UNLABELED, batch_size=5, labeled_per_batch=2, seed=1)
    indices = list(sampler)
    # 20 // 3 // 2 = 3 batches per rank
    assert len(sampler) == len(indices) == 2 * 3 * 5
    per_rank = [indices[rank::2] for rank in range(2)]
    for rank_indices in per_rank:
        assert len(rank_indices) == 15
        for batch in _chunks(rank_indices, 5):
            assert sum(i in LABELED for i in batch) == 2
            assert sum(i in UNLABELED for i in batch) == 3
    # the ranks see disjoint pseudo-labelled indices
    pseudo = [i for i in indices if i in UNLABELED]
    assert len(pseudo) == len(set(pseudo)) == 18


def test_two_ranks_through_lightning_distributed_wrapper(two_ranks):
    sampler = MixedBatchSampler(LABELED, UNLABELED, batch_size=4, labeled_per_batch=1, seed=5)
    epochs = []
    for epoch in range(2):
        seen = []
        for rank in range(2):
            wrapped = DistributedSamplerWrapper(sampler, num_replicas=2, rank=rank, shuffle=False)
            wrapped.set_epoch(epoch)  # Lightning calls this on the wrapper; it reaches our sampler
            rank_indices = list(wrapped)
            assert len(rank_indices) == len(wrapped) == len(sampler) // 2
            for batch in _chunks(rank_indices, 4):
                assert sum(i in LABELED for i in batch) == 1
            seen.append(rank_indices)
        assert sampler.epoch == epoch
        epochs.append(seen)
    assert epochs[0] != epochs[1]  # a new order every epoch


def test_uneven_batches_are_trimmed_to_whole_rounds(two_ranks):
    # 21 // 3 = 7 batches would leave one rank a batch short: 6 are kept, 3 per rank
    sampler = MixedBatchSampler(LABELED, list(range(21)), batch_size=5, labeled_per_batch=2)
    assert len(sampler) == len(list(sampler)) == 6 * 5
