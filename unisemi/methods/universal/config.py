"""The `universal:` config section (Kalluri et al., ICCV 2019). Defaults are the paper's where it
states them; docs/universal.md lists the choices made where it does not, and the `released_*`
switches reproduce the official code's departures."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
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


def validate(cfg, bad, active: bool) -> None:
    """Checks of the `universal:` section; `bad(key, value, expected)` raises the config error."""
    u = cfg.universal
    if active and len(cfg.data.domains) < 2:
        bad("data.domains", cfg.data.domains, "at least two domains for method universal")
    if u.k_pooling not in ("logsumexp", "max"):
        bad("universal.k_pooling", u.k_pooling, "logsumexp or max")
    if u.similarity not in ("dot", "cosine"):
        bad("universal.similarity", u.similarity, "dot or cosine")
    for key in ("embed_dim", "centroids"):
        if getattr(u, key) < 1:
            bad(f"universal.{key}", getattr(u, key), "an integer >= 1")
    if not 0.0 <= u.gamma <= 1.0:
        bad("universal.gamma", u.gamma, "a rate in [0, 1]")
    if u.temperature <= 0:
        bad("universal.temperature", u.temperature, "a temperature > 0")
