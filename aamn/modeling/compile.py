"""``torch.compile`` of a model's backbones (``MODEL.COMPILE_BACKBONES``), eager where it cannot.

The backbones are where the three systems spend their convolutions, and they see the same input
shapes on every call of a video (the frames of a pass), so inductor's graphs are reused.  The
heads are not compiled: their shapes change with every frame's number of boxes, and at these sizes
launching operators, not computing them, is their cost (BENCHMARKS.md, "Speed levers").

Compiling happens at a backbone's first call and takes tens of seconds on 2 CPU cores (inductor
writes and builds C++); a backbone that cannot be compiled (no C++ compiler, an operator inductor
does not support) logs a warning naming it and the reason, and runs eagerly from then on.  The
results are those of the eager backbone up to float rounding (a test).
"""

import logging

import torch
from detectron2.modeling import Backbone

__all__ = ["compile_backbones", "CompiledForward"]

logger = logging.getLogger(__name__)


def _is_compile_error(error: BaseException) -> bool:
    """An error of the compiler (dynamo or inductor), not of the model's own computation."""
    from torch._dynamo.exc import TorchDynamoException

    return isinstance(error, TorchDynamoException) or type(error).__module__.startswith(
        ("torch._inductor", "torch._dynamo")
    )


class CompiledForward:
    """A module's ``forward`` through ``torch.compile``; the eager ``forward`` once compiling
    failed (a warning says why).  An error of the computation itself is raised as it is."""

    def __init__(self, forward, name: str):
        self.eager = forward
        self.name = name
        self.compiled = torch.compile(forward)
        self.failed = False

    def __call__(self, *args, **kwargs):
        if not self.failed:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as e:
                if not _is_compile_error(e):
                    raise
                self.failed = True
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                logger.warning(
                    f"torch.compile of the model's {self.name} failed ({type(e).__name__}: "
                    f"{first}); it runs eagerly"
                )
        return self.eager(*args, **kwargs)


def compile_backbones(model: torch.nn.Module) -> list:
    """Route the ``forward`` of each backbone that is a direct child of ``model`` (AAMN's
    ``backbone`` and ``flow_backbone``, the comparison systems' alike) through ``torch.compile``.

    Returns:
        the names of the compiled children (``[]`` when there is none).
    """
    names = []
    for name, module in model.named_children():
        if isinstance(module, Backbone) and not isinstance(module.forward, CompiledForward):
            module.forward = CompiledForward(module.forward, name)
            names.append(name)
    return names
