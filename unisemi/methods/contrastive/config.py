"""The `contrastive:` config section (Alonso et al., ICCV 2021). Defaults are the paper's;
each `released_*` switch reproduces one departure of the official code (see docs/contrastive.md)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    # Eq. 1 weights; lambda_pseudo and lambda_contr are 0 for the first `warmup` iterations.
    lambda_sup: float = 1.0
    lambda_pseudo: float = 1.0
    lambda_ent: float = 0.01
    lambda_contr: float = 0.1
    warmup: int = 2000
    # Mean teacher: tau rises from ema_start to ema_end over training (cosine, Eq. 2).
    ema_start: float = 0.995
    ema_end: float = 1.0
    sharpen: float = 6.0               # pseudo-label pixel weight = teacher confidence ** s
    views: int = 2                     # A strong augmentations per unlabelled image
    class_balance: bool = True         # alpha_c = sqrt(f_median / f_c) over labels + pseudo-labels
    # Paper silent on which pixels give f_c: the release's windows (utils/class_balancing.py) are
    # the default: labels of the first N_l / B labelled batches + pseudo-labels of the last
    # (N_train - N_l) / B_u unlabelled batches, weights from when both are full (and after the
    # warm-up). Ours, kept as an option: counts since step 0, for runs shorter than that window
    # (the laptop profile's 1000 steps never fill the city window of 2876 / 2 = 1438 batches).
    class_balance_cumulative: bool = False
    augment: bool = True               # Table 1 weak/strong sets (off: flips only, for debugging)
    # Contrastive module and memory bank.
    memory_size: int = 256             # psi, entries per class
    confidence: float = 0.95           # phi, the Feature Quality Filter threshold
    proj_dim: int = 256                # projection/prediction head width
    attention_hidden: int = 256        # hidden width of each class attention module
    feature_filter: bool = True        # FQF on memory candidates (teacher correct and confident)
    attention: bool = True             # class attention weights (Eq. 8) and top-k ranking
    memory_from_teacher: bool = True   # memory entries from the teacher (else: detached student)
    contrast_labelled: bool = True     # student features from labelled pixels
    contrast_unlabelled: bool = True   # student features from pseudo-labelled pixels
    # Semi-supervised domain adaptation (paper 4.3.2): a fully labelled source domain with the
    # target's label space, sampled evenly with the target's labelled images for L_sup and L_contr;
    # the memory bank keeps target features only. Empty = no source.
    source_domain: str = ""
    # Departures of the official release, off by default.
    released_memory_attention_identity: bool = False   # memory-side weights are all exactly 1
    released_keep_lowest_ranked: bool = False          # ascending sort keeps the worst candidates
    released_sigmoid_ramp: bool = False                # exp(-5(1-t/T)^2) ramp on L_pseudo instead of 0
    released_pseudo_mean_all_pixels: bool = False      # L_pseudo averaged over ignored pixels too
    released_no_unlabelled_filter: bool = False        # all pseudo-labelled pixels enter L_contr
    released_divide_by_all_classes: bool = False       # sum of L_c divided by C, absent classes too
    released_teacher_train_mode: bool = False          # teacher predicts with batch-statistics BN
    released_source_never_sampled: bool = False        # DA script: source batches are never used
    released_normalised_entropy: bool = False          # L_ent / log C (trainSSL.py:32-48); Eq. 7 has none
    released_weighted_mean_ce: bool = False            # L_sup / sum alpha_y (utils/loss.py:31); Eq. 3: 1/N
    released_ema_warmup: bool = False                  # tau <- min(1 - 1/(10 i + 1), tau) (trainSSL.py:253)
    released_ema_parameters_only: bool = False         # BN buffers not averaged (trainSSL.py:254-255)
    released_push_count_voc: bool = False              # VOC push count max(1, int(C/3 round(psi/N_l)))
    released_topk_over_batch: bool = False             # top B x k per class over the batch, not k per image


def validate(cfg, bad, active: bool) -> None:
    """Checks of the `contrastive:` section; `bad(key, value, expected)` raises the config error."""
    from unisemi.data import known_domains, label_space
    c = cfg.contrastive
    if active and len(cfg.data.domains) != 1:
        bad("data.domains", cfg.data.domains, "exactly one domain for method contrastive")
    for key in ("warmup", "memory_size", "views", "proj_dim", "attention_hidden"):
        low = 0 if key == "warmup" else 1
        if getattr(c, key) < low:
            bad(f"contrastive.{key}", getattr(c, key), f"an integer >= {low}")
    if c.source_domain:
        known = known_domains()
        if c.source_domain not in known:
            bad("contrastive.source_domain", c.source_domain, f"one of {', '.join(known)}")
        if c.source_domain in cfg.data.domains:
            bad("contrastive.source_domain", c.source_domain, "a domain other than the target")
        if label_space(c.source_domain) != label_space(cfg.data.domains[0]):
            bad("contrastive.source_domain", c.source_domain,
                f"a domain with the label space of '{cfg.data.domains[0]}'")
    if not 0.0 <= c.confidence < 1.0:
        bad("contrastive.confidence", c.confidence, "a threshold in [0, 1)")
    if not 0.0 <= c.ema_start <= c.ema_end <= 1.0:
        bad("contrastive.ema_start", (c.ema_start, c.ema_end), "0 <= ema_start <= ema_end <= 1")
