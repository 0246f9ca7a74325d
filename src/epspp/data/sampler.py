"""A sampler that mixes labelled and pseudo-labelled samples in every batch (semi-supervised stage)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


class MixedBatchSampler(Sampler[int]):
    """Yields indices so that every batch holds ``labeled_per_batch`` labelled samples.

    The small labelled set is cycled (re-shuffled every pass) so that it is not drowned by the
    pseudo-labelled set; an epoch ends when the pseudo-labelled set is used up.  Under DDP the
    sequence is interleaved so that Lightning's strided ``DistributedSamplerWrapper`` hands every
    rank whole mixed batches.

    Args:
        labeled: dataset indices with ground truth.
        unlabeled: dataset indices with pseudo-masks.
        batch_size: per-process batch size.
        labeled_per_batch: labelled samples in each batch (1..batch_size-1).
        seed: shuffling seed (the epoch is added, see ``set_epoch``).
    """

    def __init__(
        self, labeled: Sequence[int], unlabeled: Sequence[int], batch_size: int, labeled_per_batch: int, seed: int = 0
    ) -> None:
        if not 0 < labeled_per_batch < batch_size:
            raise ValueError(f"labeled_per_batch must be in 1..{batch_size - 1}, got {labeled_per_batch}")
        if not labeled or not unlabeled:
            raise ValueError(f"need labelled and pseudo-labelled samples, got {len(labeled)} and {len(unlabeled)}")
        self.labeled, self.unlabeled = list(labeled), list(unlabeled)
        self.batch_size, self.labeled_per_batch, self.seed, self.epoch = batch_size, labeled_per_batch, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that seeds the shuffle."""
        self.epoch = epoch

    @staticmethod
    def _world_size() -> int:
        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    def _batches(self) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        per_pseudo = self.batch_size - self.labeled_per_batch
        world = self._world_size()
        num_batches = max(1, len(self.unlabeled) // per_pseudo // world) * world
        pseudo = [self.unlabeled[i] for i in torch.randperm(len(self.unlabeled), generator=generator)]
        labeled: list[int] = []
        while len(labeled) < num_batches * self.labeled_per_batch:
            labeled += [self.labeled[i] for i in torch.randperm(len(self.labeled), generator=generator)]
        pseudo = (pseudo * (1 + num_batches * per_pseudo // len(pseudo)))[: num_batches * per_pseudo]
        return [
            labeled[b * self.labeled_per_batch : (b + 1) * self.labeled_per_batch]
            + pseudo[b * per_pseudo : (b + 1) * per_pseudo]
            for b in range(num_batches)
        ]

    def __iter__(self) -> Iterator[int]:
        batches, world = self._batches(), self._world_size()
        for group in range(0, len(batches), world):
            ranks = batches[group : group + world]
            for position in range(self.batch_size):
                for batch in ranks:
                    yield batch[position]

    def __len__(self) -> int:
        per_pseudo = self.batch_size - self.labeled_per_batch
        world = self._world_size()
        return max(1, len(self.unlabeled) // per_pseudo // world) * world * self.batch_size
