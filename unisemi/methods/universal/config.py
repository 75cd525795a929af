"""The `universal:` config section (Kalluri et al., ICCV 2019). Defaults are the paper's where it
states them; docs/universal.md lists the choices made where it does not, and the `released_*`
switches reproduce the official code's departures."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UniversalConfig:
    alpha: float = 0.1                 # weight of the cross-domain entropy L_c (Eq. 5)
    beta: float = 0.1                  # weight of the within-domain entropy L_w (Eq. 5)
    embed_dim: int = 128               # d, the pixel / label embedding width
    centroids: int = 1                 # K label embeddings per class (k-means within the class)
    k_pooling: str = "logsumexp"       # how a class's K scores enter the softmax: logsumexp | max
    similarity: str = "dot"            # dot (paper) | cosine (normalised, divided by temperature)
    temperature: float = 0.1           # for similarity: cosine
    gamma: float = 1.0                 # Eq. 7 centroid EMA; 1 = fixed (paper default), 0 = recomputed
    update_every: int = 0              # iterations between centroid updates; 0 = one labelled epoch
    init: str = "pretrain"             # pretrain (Appendix A) | random (the release without a file) | <file>
    init_iterations: int = 1000        # training of each domain's own supervised model for init
    # Departures of the official release, off by default.
    released_full_resolution: bool = False           # entropy at input resolution after x8 upsampling
    released_normalised_label_embeddings: bool = False   # label embeddings L2-normalised, pixels not
    released_none_class: bool = False    # heads get C + 1 outputs, the last a "None" class never a target
