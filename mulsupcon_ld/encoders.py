"""Backbones, projection head, label-distribution head and the fine-tuning classifier.

Every backbone maps a batch to a representation ``h`` of width ``rep_dim``; everything above it
(projection head, label-distribution head ``fc``, classifier) only sees ``rep_dim``, so the MLP of
the vector datasets and ResNet-50 of the image datasets plug into :class:`~mulsupcon_ld.moco.MoCo`
and :class:`Classifier` unchanged.

Sources (facts, not code):

* Vector backbone. The paper (Section 4, Settings) says "a straightforward multilayer perceptron
  composed of three fully connected layers, ReLU activation functions, and Dropout". Widths and
  dropout follow MulSupCon's reference code (williamzhangsjtu/MulSupCon, ``codes/backbone.py``,
  class ``MLP``, itself following C-GMVAE): ``in → 256 → 512 → 256``, each Linear followed by ReLU
  and Dropout(0.2).
* Projection head. MulSupCon ``codes/models.py`` class ``MLP``: ``n_hidden`` blocks of
  Linear-BatchNorm1d-ReLU-Dropout(0.1), the hidden width halving the input while it stays at least
  twice the output width, then Linear to 256. For ``n_hidden=1``: rep 256 → 256 → 256;
  ResNet-50's 2048 → 1024 → 256.
* Image backbone. "We use ResNet-50 as a common encoder for image datasets" (Section 4):
  ``torchvision.models.resnet50`` with ``fc`` replaced by the identity (rep 2048), random
  initialisation unless a local ImageNet state dict is given (nothing is downloaded).
"""

from __future__ import annotations

import os
from typing import Sequence

import torch
from torch import nn

from . import hotpath
from .errors import UserError
from .run_settings import ModelSettings

FC_INPUTS = ("rep", "proj")


class MLPBackbone(nn.Module):
    """Three Linear-ReLU-Dropout blocks (MulSupCon/C-GMVAE widths 256, 512, 256); ``fast``: each block
    one fused node (:class:`hotpath.FusedSequential`, the same parameters)."""

    def __init__(self, n_features: int, hidden: Sequence[int] = (256, 512, 256), dropout: float = 0.2,
                 fast: bool = False):
        super().__init__()
        if n_features is None or int(n_features) < 1:
            raise UserError(f"the MLP backbone needs n_features >= 1, got {n_features!r}")
        layers: list[nn.Module] = []
        width = int(n_features)
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU(), nn.Dropout(p=dropout)]
            width = int(h)
        self.net = hotpath.sequential(layers, fast)
        self.rep_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ResNet50Backbone(nn.Module):
    """torchvision ResNet-50 without its classifier: ``[N, 3, H, W] -> [N, 2048]``.

    ``weights`` is ``None`` (random init, the default) or the path of a local torchvision
    ImageNet state dict; its ``fc.*`` entries are ignored. With ``channels_last`` the input is
    converted to NHWC before the stem (call ``.to(memory_format=torch.channels_last)`` on the
    model too; the training loop does this for image data on CUDA).
    """

    def __init__(self, weights: str | os.PathLike | None = None, channels_last: bool = False):
        super().__init__()
        from torchvision.models import resnet50

        net = resnet50(weights=None)
        net.fc = nn.Identity()
        if weights:
            path = os.fspath(weights)
            if not os.path.isfile(path):
                raise UserError(f"ResNet-50 weights file {path} does not exist; pass a local torchvision "
                                "resnet50 state dict (.pth) or leave model.weights unset for random init")
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
            missing, unexpected = net.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise UserError(f"{path} is not a torchvision resnet50 state dict "
                                f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
        self.net = net
        self.channels_last = channels_last
        self.rep_dim = 2048

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)


def build_backbone(kind: str, n_features: int | None = None, **kw) -> nn.Module:
    """``"mlp"`` (needs ``n_features``; kw ``hidden``, ``dropout``) or ``"resnet50"`` (kw ``weights``,
    ``channels_last``). The result has an int attribute ``rep_dim``."""
    if kind == "mlp":
        return MLPBackbone(n_features, **kw)
    if kind == "resnet50":
        return ResNet50Backbone(**kw)
    raise UserError(f"unknown backbone {kind!r}; choose 'mlp' or 'resnet50'")


class ProjectionHead(nn.Module):
    """MulSupCon's projection head: ``n_hidden`` × (Linear-BN-ReLU-Dropout(0.1)), then Linear
    (``fast``: ReLU-Dropout fused, :class:`hotpath.FusedSequential`)."""

    def __init__(self, in_dim: int, out_dim: int = 256, n_hidden: int = 1, dropout: float = 0.1,
                 fast: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(n_hidden):
            nxt = width // 2 if width >= 2 * out_dim else out_dim
            layers += [nn.Linear(width, nxt), nn.BatchNorm1d(nxt), nn.ReLU(), nn.Dropout(p=dropout)]
            width = nxt
        layers.append(nn.Linear(width, out_dim))
        self.net = hotpath.sequential(layers, fast)
        self.out_dim = out_dim

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class Encoder(nn.Module):
    """Backbone + projection head; ``forward`` returns ``(h, p)`` (representation, projection).

    The projection is not normalised here; :class:`~mulsupcon_ld.moco.MoCo` L2-normalises it.
    """

    def __init__(self, backbone: nn.Module, proj_dim: int = 256, proj_hidden_layers: int = 1,
                 proj_dropout: float = 0.1, fast: bool = False):
        super().__init__()
        self.backbone = backbone
        self.head = ProjectionHead(backbone.rep_dim, proj_dim, proj_hidden_layers, proj_dropout, fast)
        self.rep_dim = backbone.rep_dim
        self.out_dim = proj_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.backbone(x)
        return h, self.head(h)


def build_encoder(model_cfg: ModelSettings, n_features: int | None = None, fast: bool = False) -> Encoder:
    """The query encoder described by the ``model`` block of the settings; ``fast``: in the fast
    lane's fused modules (``RunSettings.fast_lane``; ResNet-50 has no Linear-ReLU-Dropout run)."""
    kind = model_cfg.backbone
    if kind == "mlp":
        backbone = build_backbone("mlp", n_features, hidden=tuple(model_cfg.hidden),
                                  dropout=float(model_cfg.dropout), fast=fast)
    else:
        backbone = build_backbone(kind, weights=model_cfg.weights, channels_last=bool(model_cfg.channels_last))
    return Encoder(backbone, model_cfg.proj_dim, model_cfg.proj_hidden_layers, float(model_cfg.proj_dropout),
                   fast)


class Classifier(nn.Module):
    """Fine-tuning network: backbone (→ projection head when ``fc_input == "proj"``) → Linear.

    :meth:`from_pretrained` copies the query encoder and the label-distribution head ``fc`` of a
    pretrained :class:`~mulsupcon_ld.moco.MoCo`, so the classifier starts as the pretrained ``fc``
    (Section 4: "we will employ the fully connected layer, which generates label distributions from
    the pre-trained models, along with the Binary Cross Entropy (BCE) Loss"). The logits are then
    trained with BCE, i.e. read through a sigmoid instead of the pretraining softmax.
    """

    def __init__(self, backbone: nn.Module, n_labels: int, head: nn.Module | None = None):
        super().__init__()
        self.backbone = backbone
        self.head = head  # projection head, only when fc read the projection during pretraining
        in_dim = head.out_dim if head is not None else backbone.rep_dim
        self.fc = nn.Linear(in_dim, n_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.backbone(x)
        if self.head is not None:
            h = self.head(h)
        return self.fc(h)

    @classmethod
    def from_pretrained(cls, moco: nn.Module) -> "Classifier":
        """Fine-tuning runs the reference arithmetic, whatever the pretraining lane."""
        enc = moco.encoder_q
        head = hotpath.reference_copy(enc.head) if moco.fc_input == "proj" else None
        model = cls(hotpath.reference_copy(enc.backbone), moco.fc.out_features, head)
        model.fc.load_state_dict(moco.fc.state_dict())
        return model
