"""Meta-group sampler: every meta-group ``S_z`` lands whole inside one generation batch (paper Algorithm 1, line 2).

AIR needs each open variant's anchors in the *same* batch, generated under the same θ: ``Δ_s = r̄_acr(z) − r̄_s``
compares rewards of one policy. TRL's ``RepeatSampler`` shuffles single prompts, which scatters meta-groups over
batches. This sampler shuffles **meta-groups** instead, then lays indices out exactly as ``RepeatSampler`` does, so the
rest of TRL is unchanged:

- chunks of ``batch_size = B_u = generation_batch_size // num_generations`` unique prompts, each chunk made of
  ``B_u / M`` whole meta-groups (``M`` prompts each); a short last chunk is dropped;
- each chunk repeated ``repeat_count = num_iterations × steps_per_generation`` times;
- each index yielded ``mini_repeat_count = num_generations`` times in a row (the K completions of a prompt).

The order depends only on ``seed`` and the epoch, never on the process, so every process iterates the same
sequence and accelerate hands each one a contiguous slice. A meta-group may straddle processes; the trainer
gathers rewards before computing anchor means.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


def group_indices(group_ids: Sequence) -> list[list[int]]:
    """Dataset indices grouped by meta-group, groups in order of first appearance, indices in dataset order.

    >>> group_indices(["a", "b", "a", "c", "b", "c"])
    [[0, 2], [1, 4], [3, 5]]
    """
    groups: dict = {}
    for i, g in enumerate(group_ids):
        groups.setdefault(g, []).append(i)
    return list(groups.values())


def valid_generation_batch_sizes(meta_group_size: int, num_generations: int, count: int = 4) -> list[int]:
    """The first ``count`` generation batch sizes (in completions) that hold whole meta-groups: ``j·M·K``.

    >>> valid_generation_batch_sizes(3, 4)
    [12, 24, 36, 48]
    """
    return [j * meta_group_size * num_generations for j in range(1, count + 1)]


class MetaGroupSampler(Sampler[int]):
    """``RepeatSampler``'s layout over shuffled whole meta-groups.

    Args:
        group_ids: the meta-group of every dataset row (any hashable, e.g. the ``group_id`` strings).
        mini_repeat_count: ``num_generations`` K, consecutive copies of each index.
        batch_size: ``B_u``, unique prompts per generation batch; must be a multiple of the meta-group size.
        repeat_count: ``num_iterations × steps_per_generation``, how many times each chunk is replayed.
        shuffle: shuffle meta-groups (by ``seed + epoch``); otherwise keep the order of first appearance.
        seed: base seed, identical on every process.

    Raises:
        ValueError: meta-groups of different sizes; ``batch_size`` not a multiple of the meta-group size (the
            message lists sizes that work); fewer meta-groups than one batch needs.
    """

    def __init__(
        self,
        group_ids: Sequence,
        mini_repeat_count: int,
        batch_size: int,
        repeat_count: int = 1,
        shuffle: bool = True,
        seed: int = 0,
    ):
        self.groups = group_indices(group_ids)
        if not self.groups:
            raise ValueError("MetaGroupSampler got an empty dataset: no rows, no meta-groups to sample")
        sizes = Counter(len(g) for g in self.groups)
        if len(sizes) != 1:
            raise ValueError(
                f"meta-groups have different sizes {dict(sorted(sizes.items()))} (size: number of meta-groups); the "
                "meta-group sampler packs whole meta-groups into fixed-size generation batches, so every meta-group "
                "needs the same number of prompts (same anchors and open variants per intent)"
            )
        self.meta_group_size = next(iter(sizes))
        if batch_size % self.meta_group_size != 0:
            k = mini_repeat_count
            raise ValueError(
                f"a generation batch holds {batch_size} prompts (generation_batch_size {batch_size * k} / "
                f"num_generations {k}), not a whole number of meta-groups of {self.meta_group_size} prompts. Use a "
                f"generation_batch_size in {valid_generation_batch_sizes(self.meta_group_size, k)}... (a multiple of "
                f"meta-group size × num_generations = {self.meta_group_size * k}), i.e. set "
                "per_device_train_batch_size × num_processes × steps_per_generation to one of these"
            )
        self.groups_per_batch = batch_size // self.meta_group_size
        if len(self.groups) < self.groups_per_batch:
            raise ValueError(
                f"the dataset has {len(self.groups)} meta-groups but one generation batch needs "
                f"{self.groups_per_batch} ({batch_size} prompts / {self.meta_group_size} per meta-group); "
                "add data or lower the generation batch size"
            )
        self.mini_repeat_count = mini_repeat_count
        self.batch_size = batch_size
        self.repeat_count = repeat_count
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by accelerate/transformers before each epoch; the order is a function of ``seed + epoch``."""
        self.epoch = epoch

    def _group_order(self) -> list[int]:
        if not self.shuffle:
            return list(range(len(self.groups)))
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(len(self.groups), generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        order = self._group_order()
        self.epoch += 1  # a later epoch reshuffles even when nobody calls set_epoch
        num_batches = len(order) // self.groups_per_batch
        for b in range(num_batches):
            chunk = [
                i for g in order[b * self.groups_per_batch : (b + 1) * self.groups_per_batch] for i in self.groups[g]
            ]
            for _ in range(self.repeat_count):
                for index in chunk:
                    for _ in range(self.mini_repeat_count):
                        yield index

    def __len__(self) -> int:
        num_batches = len(self.groups) // self.groups_per_batch
        return num_batches * self.batch_size * self.mini_repeat_count * self.repeat_count
