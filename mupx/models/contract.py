"""What mupx needs from a model it trains: ``model(idx)`` with ``idx`` a ``[batch, time]`` tensor of token ids
returns the next-token logits ``[batch, time, vocab]``, as a tensor, as the first element of a tuple, or as
``.logits`` (Hugging Face's ``CausalLMOutput``). mupx computes the loss itself, the same way for every model:
the mean cross-entropy in float32 against the next tokens (``targets[b, t] = idx[b, t + 1]``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import MupxError


def logits_of(output) -> torch.Tensor:
    """The logits in a model's output: the tensor itself, a tuple's first element, or ``output.logits``."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    raise MupxError(
        f"the model returned a {type(output).__name__}: mupx needs model(idx) to return the logits [batch, time, vocab] "
        "(a tensor, a tuple starting with them, or an object with .logits)"
    )


def next_token_loss(output, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (float32) of a model's output against ``targets`` ``[batch, time]``."""
    logits = logits_of(output)
    if logits.shape[:-1] != targets.shape:
        raise MupxError(
            f"the model returned logits of shape {tuple(logits.shape)} for {tuple(targets.shape)} tokens: mupx needs "
            "logits for every position, [batch, time, vocab] (nanoGPT's forward returns only the last position "
            "when called without targets)"
        )
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))
