"""Model FLOPs utilisation: achieved training FLOP/s over the accelerator's peak.

MFU = tokens/s × FLOPs per token / peak FLOP/s (PaLM, Chowdhery et al. 2022, App. B), with FLOPs per
token = 6·N + 12·L·T·width (``Transformer.flops_per_token``; N the matmul parameters, not the lookups).
The peak is the dense bf16 tensor-core peak from the vendor's data sheet, looked up by the GPU's name
(``train.peak_tflops`` overrides it, e.g. for another GPU or to state an fp32 peak); on a CPU there is
no peak and no MFU.
"""

from __future__ import annotations

import torch

# Dense bf16 peak, TFLOP/s, by a substring of torch.cuda.get_device_name(); the first match wins.
PEAK_BF16_TFLOPS = (
    ("H200", 989.0),  # H200 SXM
    ("H100 PCIe", 756.0),
    ("H100", 989.0),  # H100 SXM
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("V100", 125.0),  # fp16 tensor cores (no bf16)
)


def peak_flops(device: torch.device, override_tflops: float | None) -> float | None:
    """The peak FLOP/s the MFU is measured against, or None when unknown (CPU, a GPU not in the table)."""
    if override_tflops is not None:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tflops * 1e12 for key, tflops in PEAK_BF16_TFLOPS if key in name), None)


def mfu(tokens_per_s: float, flops_per_token: float, peak: float | None) -> float | None:
    return tokens_per_s * flops_per_token / peak if peak else None
