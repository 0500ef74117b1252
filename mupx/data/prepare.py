"""``mupx data prepare``: build a corpus's token cache ahead of training, with a progress bar.

The build is :func:`mupx.data.load_corpus` itself, the call training makes, so a prepared corpus is a cache
hit for training, and a build killed part-way resumes after its last chunk whichever command runs next.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from .config import DataConfig
from .corpus import CHUNK_DOCS, TokenCorpus, load_corpus

STAGES = {"bpe": "training BPE", "train": "tokenizing train", "val": "tokenizing val"}


def prepare(
    cfg: DataConfig, console: Console, chunk_docs: int | None = None, show_progress: bool = True
) -> tuple[TokenCorpus, bool]:
    """The corpus of ``cfg``, tokenized into the cache unless it is there; returns it and whether anything
    was built (documents per stage, tokens written, elapsed time on the bar)."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("documents, {task.fields[tokens]:,} tokens"),
        TimeElapsedColumn(),
    )
    tasks: dict[str, TaskID] = {}
    bar = Progress(*columns, console=console, disable=not show_progress)

    def on_progress(stage: str, docs: int, tokens: int, total: int | None) -> None:
        if stage not in tasks:
            if not tasks:
                bar.start()  # only when something is built: a cache hit prints no bar
            if "bpe" in tasks:  # tokenizing starts when the BPE is trained
                trained = bar.tasks[tasks["bpe"]].total or 0
                bar.update(tasks["bpe"], total=trained, completed=trained)
            resumed = " (resumed)" if docs else ""
            tasks[stage] = bar.add_task(STAGES[stage] + resumed, total=total, tokens=0)
        bar.update(tasks[stage], completed=docs, tokens=tokens)

    try:
        corpus = load_corpus(cfg, on_progress, CHUNK_DOCS if chunk_docs is None else chunk_docs)
    finally:
        bar.stop()
    return corpus, bool(tasks)
