"""The LRL compiled by OpenVINO for the CPU: an optional backend of the engine.

On this project's 2-core CPU OpenVINO ran the same network 2.5-3.4x faster than torch's float32
path with results within 1e-3 of a grey level (docs/benchmarks.md, "LRL backends"). It is
compiled at float32 precision on purpose: OpenVINO's default on CPUs with AMX is bfloat16,
whose error through the LRL exceeds 1/255. Needs the `openvino` wheel (extra `openvino`).
"""

from __future__ import annotations

import threading

import torch
from torch import nn

from model.lrl import LocalRetouchingLayer, LRLOutput


class _Graph(nn.Module):
    """The LRL with plain tensor outputs, as the converter wants them."""

    def __init__(self, lrl: LocalRetouchingLayer) -> None:
        super().__init__()
        self.lrl = lrl

    def forward(self, image: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.lrl(image, valid)
        return out.result, out.mask, out.mask_logits


class OpenVINOLRL:
    """Runs an LRL's weights through OpenVINO; called like the module, (canvas, valid) ->
    LRLOutput, on CPU tensors of any batch and canvas size."""

    def __init__(self, lrl: LocalRetouchingLayer, threads: int | None = None) -> None:
        import openvino as ov

        stride = lrl.cfg.stride
        example = (
            torch.zeros(1, 3, 8 * stride, 8 * stride),
            torch.ones(1, 1, 8 * stride, 8 * stride),
        )
        with torch.no_grad():
            graph = ov.convert_model(
                _Graph(lrl).eval(),
                example_input=example,
                input=[ov.PartialShape([-1, 3, -1, -1]), ov.PartialShape([-1, 1, -1, -1])],
            )
        config = {
            "INFERENCE_PRECISION_HINT": "f32",
            "INFERENCE_NUM_THREADS": threads or torch.get_num_threads(),
        }
        self._compiled = ov.Core().compile_model(graph, "CPU", config)
        # One compiled model serves one inference at a time; the engine may be shared.
        self._lock = threading.Lock()

    def __call__(self, image: torch.Tensor, valid: torch.Tensor) -> LRLOutput:
        """The LRL's outputs for a padded canvas, as torch tensors."""
        with self._lock:
            res = self._compiled(
                [image.float().contiguous().numpy(), valid.float().contiguous().numpy()]
            )
        result, mask, logits = (torch.from_numpy(res[self._compiled.output(i)]) for i in range(3))
        return LRLOutput(result=result, mask=mask, mask_logits=logits)
