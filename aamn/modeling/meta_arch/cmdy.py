"""Context modulated dynamic networks for actor and action video segmentation with language queries
(CMDy, Wang et al., AAAI 2020).  Equations are that paper's.

Per stream (``MODEL.CMDY.STREAMS``; the paper's model is RGB only), ``CMDyHead``:

* sentence ``F_T`` (``BiGRUMaxEncoder``: BiGRU, max over the words);
* clip: the backbone on every frame and ``MODEL.CLIP_ENCODER`` over time (the I3D substitute,
  ``aamn.modeling.clip_baselines``) give ``X_t``; ``F_V^S = L2(mean_t X_t)``;
* ``Decon_a(F_V^S)``: ``ConvT(k8, s4, p2) + BN + ReLU``, ``Conv3x3 + BN + ReLU`` -> ``DECON_DIM`` at
  stride 4; with ``TEMPORAL``, the temporal branch: a ConvLSTM (Eq. 14, hidden = input channels,
  3x3 kernels, peephole weights) over the raw ``X_t``, its last hidden state through ``Decon_b``
  (separate weights); ``F_V^M = [Decon_a, Decon_b]`` (Eq. 15), ``D = 2 DECON_DIM`` (``DECON_DIM``
  without the branch);
* ``NUM_MODULES`` stacked context modulated dynamic modules with residuals (``CMDyModule``); the
  last outputs the response ``R^M`` (1 channel, stride 4); ``R^L`` = bilinear x4 = the input size;
* Eq. (16): ``mean_ij [-lambda Y log sigma(R) - (1 - Y) log(1 - sigma(R))]``, ``lambda = FG_WEIGHT``
  (1.5), against the key frame's mask on the padded canvas;
* inference: "foreground when its value is higher than the half of the maximum value in response
  map" -> ``sigmoid(R^L) > 0.5 max`` over the frame (``THRESHOLD_MODE "half_max"``).

CMDy's Table 3 rows are ``MODEL.CMDY.CONV`` values: ``"dyconv"`` (the baseline dynamic convolution:
``R^M = k . [F_V^M, coords]``, ``k = tanh(FC(F_T))`` in ``R^(D+8)``, one module), ``"group"``
(Eq. 7-8: group-wise dynamic convolution from the query alone, the centre tap only, one module),
``"context"`` (Eq. 11: kernels modulated by the local visual context, 3x3 windows, three modules),
``"deformable"`` (Eq. 12: the same on deformed windows, three modules; the default), and
``TEMPORAL`` (+ the temporal branch).  Settled choices where the paper is silent: ``k^V`` is
computed per position (Eq. 11 is written without ``p``; the text calls it content-dependent, from a
convolution) with tanh; ``G = GROUPS`` groups of ``N = D / G`` channels; the offsets ``Delta`` come
from a zero-initialised 3x3 convolution (DCNv1).  Deformable sampling is bilinear ``grid_sample``
(zeros outside), equal to ``torchvision.ops.deform_conv2d`` with one-hot kernels (tested) and about
10x faster on the CPU; detectron2's ``DeformConv`` needs compiled ops.
"""

from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY

from ..clip_baselines import COORD_DIM, ClipBaselineModel, SentenceClipHead, append_coords
from .dynamic_filter import upsample_block

__all__ = [
    "CMDY_CONVS",
    "CMDy",
    "CMDyHead",
    "CMDyModule",
    "ConvLSTM",
    "deformable_windows",
    "local_windows",
]

CMDY_CONVS = ("dyconv", "group", "context", "deformable")


def local_windows(x: torch.Tensor) -> torch.Tensor:
    """The 3x3 neighbourhood of every position (zeros outside): ``(B, C, H, W) -> (B, C, 9, H, W)``,
    tap ``l = 3 dy + dx`` for offsets ``(dy - 1, dx - 1)``."""
    B, C, H, W = x.shape
    return F.unfold(x, 3, padding=1).view(B, C, 9, H, W)


def deformable_windows(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Eq. (12)'s deformed 3x3 windows: ``U[b, c, l, p] = x[b, c](p + l + Delta_l(p))``, bilinear,
    zeros outside.

    Args:
        x: ``(B, C, H, W)``.
        offsets: ``(B, 18, H, W)``, ``(dy, dx)`` of tap ``l`` at channels ``2l``, ``2l + 1``
            (torchvision's ``deform_conv2d`` layout).

    Returns:
        ``(B, C, 9, H, W)``.
    """
    B, C, H, W = x.shape
    ys = torch.arange(H, device=x.device, dtype=x.dtype).view(1, 1, H, 1)
    xs = torch.arange(W, device=x.device, dtype=x.dtype).view(1, 1, 1, W)
    taps = torch.arange(9, device=x.device)
    ty = (taps // 3 - 1).to(x.dtype).view(1, 9, 1, 1)
    tx = (taps % 3 - 1).to(x.dtype).view(1, 9, 1, 1)
    py = ys + ty + offsets[:, 0::2]  # (B, 9, H, W)
    px = xs + tx + offsets[:, 1::2]
    grid = torch.stack(
        [2 * px / max(W - 1, 1) - 1, 2 * py / max(H - 1, 1) - 1], dim=-1
    )  # (B, 9, H, W, 2)
    out = F.grid_sample(
        x, grid.view(B, 9 * H, W, 2), mode="bilinear", padding_mode="zeros", align_corners=True
    )
    return out.view(B, C, 9, H, W)


class ConvLSTM(nn.Module):
    """Eq. (14): a convolutional LSTM with peephole connections (3x3 kernels, hidden = input width).

    ``forward(x (B, T, C, h, w)) -> (h_T (B, C, h, w), [h_1, ..., h_T])``; the state starts at zero.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.gates = nn.Conv2d(2 * channels, 4 * channels, 3, padding=1)
        self.peep_i = nn.Parameter(torch.zeros(channels, 1, 1))
        self.peep_f = nn.Parameter(torch.zeros(channels, 1, 1))
        self.peep_o = nn.Parameter(torch.zeros(channels, 1, 1))

    def forward(self, x: torch.Tensor):
        h = c = torch.zeros_like(x[:, 0])
        states = []
        for t in range(x.shape[1]):
            i, f, g, o = self.gates(torch.cat([x[:, t], h], dim=1)).chunk(4, dim=1)
            i = torch.sigmoid(i + self.peep_i * c)
            f = torch.sigmoid(f + self.peep_f * c)
            c = f * c + i * torch.tanh(g)
            o = torch.sigmoid(o + self.peep_o * c)
            h = o * torch.tanh(c)
            states.append(h)
        return h, states


class CMDyModule(nn.Module):
    """One context modulated dynamic module (Eq. 5-12) with its projection and residual.

    ``F (B, D, H, W)``, ``F_T (B, D_T)`` -> ``F + BN(P([g, coords]))`` (ReLU), or the 1-channel
    response ``P([g, coords])`` for the last module (``last=True``).  ``g (B, G, H, W)``:

    * ``group`` (Eq. 7-8): ``g_j(p) = sum_i k^T_c F_c(p)``, ``c = jN + i``;
    * ``context`` (Eq. 11): ``g_j(p) = sum_i sum_l k^T_c k^V_{c,l}(p) F_c(p + l)``;
    * ``deformable`` (Eq. 12): the same on ``U_{c,l}(p) = F_c(p + l + Delta_l(p))``;

    with ``k^T = tanh(FC(F_T)) (D)`` (Eq. 5) and ``k^V = tanh(Conv3x3(F)) (9D per position)`` (Eq.
    10; ``visual_kernel_groups`` groups of that convolution).  The convolution's output channel
    ``9c + l`` is ``k^V_{c,l}``, so with groups the kernels of channel ``c`` are computed from the
    channels of ``c``'s group."""

    def __init__(
        self,
        channels: int,
        text_dim: int,
        groups: int,
        conv: str,
        last: bool = False,
        visual_kernel_groups: int = 1,
    ):
        super().__init__()
        if conv not in ("group", "context", "deformable"):
            raise ValueError(
                f"CMDyModule conv must be 'group', 'context' or 'deformable', got {conv!r}"
            )
        if channels % groups:
            raise ValueError(f"MODEL.CMDY.GROUPS {groups} must divide the feature width {channels}")
        self.conv, self.groups, self.last = conv, groups, last
        self.text_kernel = nn.Linear(text_dim, channels)  # Eq. (5)
        if conv != "group":
            if channels % visual_kernel_groups:
                raise ValueError(
                    f"MODEL.CMDY.VISUAL_KERNEL_GROUPS {visual_kernel_groups} must divide the "
                    f"feature width {channels}"
                )
            # Eq. (10); with g groups, the 9 taps of channel c come from c's group alone
            self.visual_kernel = nn.Conv2d(
                channels, 9 * channels, 3, padding=1, groups=visual_kernel_groups
            )
        if conv == "deformable":
            self.offsets = nn.Conv2d(channels, 18, 3, padding=1)
            nn.init.zeros_(self.offsets.weight)
            nn.init.zeros_(self.offsets.bias)
        self.project = nn.Conv2d(groups + COORD_DIM, 1 if last else channels, 1)
        self.norm = None if last else nn.BatchNorm2d(channels)

    def grouped_response(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """``g (B, G, H, W)`` of Eq. (8) / (11) / (12)."""
        B, D, H, W = x.shape
        k_t = torch.tanh(self.text_kernel(text))  # (B, D)
        if self.conv == "group":
            prod = k_t[:, :, None, None] * x  # centre tap only
        else:
            k_v = torch.tanh(self.visual_kernel(x)).view(B, D, 9, H, W)
            U = (
                deformable_windows(x, self.offsets(x))
                if self.conv == "deformable"
                else local_windows(x)
            )
            prod = (k_t[:, :, None, None, None] * k_v * U).sum(dim=2)
        return prod.view(B, self.groups, D // self.groups, H, W).sum(dim=2)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        g = self.grouped_response(x, text)
        y = self.project(append_coords(g))
        return y if self.last else F.relu(x + self.norm(y))


class CMDyHead(SentenceClipHead):
    """One stream of CMDy: ``X (B, T, C, h, w)`` and the queries -> ``[R^L]`` at the canvas size."""

    @configurable
    def __init__(self, *, in_channels: int, decon_dim=256, groups=64, num_modules=3,
                 conv="deformable", temporal=True, fg_weight=1.5, visual_kernel_groups=1,
                 **encoders):  # fmt: skip
        """``MODEL.CMDY`` keys: ``DECON_DIM``, ``GROUPS``, ``NUM_MODULES``, ``CONV``, ``TEMPORAL``,
        ``FG_WEIGHT``, ``VISUAL_KERNEL_GROUPS``; ``encoders``: see ``SentenceClipHead``."""
        super().__init__(**encoders)
        if conv not in CMDY_CONVS:
            raise ValueError(f"Unknown MODEL.CMDY.CONV {conv!r}; choose from {CMDY_CONVS}")
        self.decon_a = upsample_block(in_channels, decon_dim, norm=True)
        self.temporal = ConvLSTM(in_channels) if temporal else None
        self.decon_b = upsample_block(in_channels, decon_dim, norm=True) if temporal else None
        D = decon_dim * (2 if temporal else 1)
        text_dim = self.language.sentence_dim
        self.conv = conv
        if conv == "dyconv":
            self.dyconv = nn.Linear(text_dim, D + COORD_DIM)
            self.cmdy_modules = nn.ModuleList()
        else:
            n = 1 if conv == "group" else num_modules
            self.cmdy_modules = nn.ModuleList(
                CMDyModule(D, text_dim, groups, conv, m == n - 1, visual_kernel_groups)
                for m in range(n)
            )
        self.register_buffer("fg_weight", torch.tensor(float(fg_weight)), persistent=False)

    @classmethod
    def from_config(cls, cfg, in_channels: int, in_stride: int = 16):
        # in_stride: the decoder upsamples x4 then resizes to the canvas, whatever the stride
        C = cfg.MODEL.CMDY
        return {
            **super().from_config(cfg, in_channels),
            "in_channels": in_channels,
            "decon_dim": C.DECON_DIM,
            "groups": C.GROUPS,
            "num_modules": C.NUM_MODULES,
            "conv": C.CONV,
            "temporal": C.TEMPORAL,
            "fg_weight": C.FG_WEIGHT,
            "visual_kernel_groups": C.VISUAL_KERNEL_GROUPS,
        }

    def forward(self, X: torch.Tensor, query_tokens, canvas) -> List[torch.Tensor]:
        X, text = self.encode(X, query_tokens)  # (B, T', C, h, w), F_T (B, D_T)
        feats = [self.decon_a(F.normalize(X.mean(dim=1), dim=1))]  # Decon_a(F_V^S)
        if self.temporal is not None:
            feats.append(self.decon_b(self.temporal(X)[0]))  # Decon_b(ConvLSTM(X)), Eq. (14)
        x = torch.cat(feats, dim=1)  # F_V^M (Eq. 15)
        if self.conv == "dyconv":
            k = torch.tanh(self.dyconv(text))
            r = torch.einsum("bc,bchw->bhw", k, append_coords(x))
        else:
            for module in self.cmdy_modules:
                x = module(x, text)
            r = x[:, 0]  # R^M
        return [
            F.interpolate(r[:, None], size=canvas, mode="bilinear", align_corners=False)[:, 0]
        ]  # R^L

    def losses(self, responses: List[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        """Eq. (16): BCE with the foreground weighted by ``lambda``."""
        return F.binary_cross_entropy_with_logits(responses[-1], targets, pos_weight=self.fg_weight)


@META_ARCH_REGISTRY.register()
class CMDy(ClipBaselineModel):
    """CMDy (RGB; ``STREAMS ["rgb", "flow"]`` gives the two-stream variant of AAMN's Tables
    X-XI)."""

    @classmethod
    def from_config(cls, cfg):
        return cls.args_with_heads(cfg, cfg.MODEL.CMDY, CMDyHead)
