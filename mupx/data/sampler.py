"""BatchSampler: random training windows from a token array, reproducible from (seed, rank)."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from ..errors import MupxError


def derived_seed(purpose: str, *parts: int) -> int:
    """A 63-bit generator seed from a purpose and integers: equal inputs give equal seeds, different ones
    differ (sha256), so each stream of randomness gets its own generator, never the global one."""
    digest = hashlib.sha256(":".join([f"mupx-{purpose}", *map(str, parts)]).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class BatchSampler:
    """Random windows from a token array, from a seeded torch.Generator (never the global RNG).

    Each call to :meth:`next` draws ``batch`` start positions uniformly, so every window of
    ``seq_len + 1`` tokens is equally likely; ``y`` is ``x`` shifted left by one token.
    """

    def __init__(self, tokens: np.ndarray, batch: int, seq_len: int, seed: int, rank: int = 0):
        if tokens.ndim != 1:
            raise ValueError(f"tokens must be a 1-D array, got shape {tokens.shape}")
        if batch < 1 or seq_len < 1:
            raise MupxError(f"batch and seq_len must be positive, got batch {batch}, seq_len {seq_len}")
        if len(tokens) < seq_len + 1:
            raise MupxError(f"corpus split too small for seq_len {seq_len}: has {len(tokens)} tokens")
        self.tokens = tokens
        self.batch = batch
        self.seq_len = seq_len
        self.seed = seed
        self.rank = rank
        self.step = 0  # batches drawn so far
        self.generator = torch.Generator().manual_seed(derived_seed("batch-sampler", seed, rank))
        self._offsets = np.arange(seq_len + 1)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next (x, y) pair, both int64 of shape [batch, seq_len]."""
        ((x, y),) = self.next_shard(rank=0, world=1, accum=1)
        return x, y

    def next_shard(self, rank: int, world: int, accum: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's ``accum`` micro-batches of the next global batch.

        The ``batch`` start positions are drawn exactly as :meth:`next` draws them; rank r takes rows
        [r·batch/world, (r+1)·batch/world) and splits them into ``accum`` equal micro-batches, reading
        only its own windows. So the global batch of a step depends on (seed, step) alone, not on the
        number of ranks or micro-batches: 1 rank × 2 micro-batches trains on the same data as 2 ranks.
        """
        per_rank, micro = self.batch // world, self.batch // (world * accum)
        if micro * world * accum != self.batch:
            raise MupxError(f"batch {self.batch} is not divisible by world size {world} x accum {accum}")
        n_starts = len(self.tokens) - self.seq_len
        starts = torch.randint(0, n_starts, (self.batch,), generator=self.generator).numpy()
        self.step += 1
        mine = starts[rank * per_rank : (rank + 1) * per_rank]
        windows = torch.from_numpy(self.tokens[mine[:, None] + self._offsets].astype(np.int64))
        return [(w[:, :-1].contiguous(), w[:, 1:].contiguous()) for w in windows.split(micro)]

    def state_dict(self) -> dict:
        """Tensors and ints only, so it survives torch.save / torch.load(weights_only=True)."""
        return {
            "generator": self.generator.get_state(),
            "step": self.step,
            "seed": self.seed,
            "rank": self.rank,
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume the exact sequence of batches saved by :meth:`state_dict`."""
        if (state["seed"], state["rank"]) != (self.seed, self.rank):
            raise MupxError(
                f"sampler state is for seed {state['seed']} rank {state['rank']}, "
                f"not seed {self.seed} rank {self.rank}"
            )
        self.generator.set_state(state["generator"])
        self.step = int(state["step"])
