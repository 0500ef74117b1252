"""The data layer: text sources -> tokenizer -> cached token arrays -> random training batches.

``load_corpus(DataConfig(...))`` returns a :class:`TokenCorpus` (train/val token memory maps, the vocab
size and a manifest); :class:`BatchSampler` draws reproducible (x, y) batches from one of its splits.
"""

from .config import DataConfig
from .corpus import TokenCorpus, load_corpus
from .sampler import BatchSampler

__all__ = ["BatchSampler", "DataConfig", "TokenCorpus", "load_corpus"]
