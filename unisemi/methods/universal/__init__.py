"""Universal semi-supervised segmentation (Kalluri et al., ICCV 2019) as one plug-in.

A shared encoder with one head per domain (the model), trained on the mixed labelled batch
(Eq. 1, as `supervised`), plus the entropy module: a 1x1 projection of encoder features to a
d-dimensional pixel embedding, scored by dot product against each domain's label embeddings;
the entropy of the softmax over a domain's labels is minimised on unlabelled pixels, within the
pixel's own domain (L_w) and across domains (L_c): L = L_S + alpha L_c + beta L_w (Eq. 5).

Label embeddings: K per class, from each domain's own supervised model (Appendix A), fixed unless
gamma < 1 (Eq. 7, updated every labelled epoch in the entropy module's own embedding space).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unisemi.losses import cross_entropy, entropy_map
from unisemi.models import encode_parts
from unisemi.methods.universal.config import Config, validate  # noqa: F401  (the `universal:` section)
from unisemi.methods.universal.embeddings import class_centroids, pretrained_centroids

NEEDS_UNLABELLED = True


def head_classes(cfg, domain: str, num_classes: int) -> int:
    """Outputs of a domain's head. `released_none_class`: one more, the release's "None" class,
    which is never a target (void stays ignored) but enters the softmax of the supervised CE and
    the argmax at evaluation, where predicting it is a miss (evaluate.confusion_matrix). The
    entropy module still scores only the C real classes, as the release drops its "None" embedding."""
    return num_classes + 1 if cfg.universal.released_none_class else num_classes


class State(nn.Module):
    def __init__(self, cfg, model, classes: dict):
        super().__init__()
        u = cfg.universal
        self.cfg, self.domains = cfg, list(classes)
        self.projection = nn.Conv2d(model.encoder_channels, u.embed_dim, 1)   # the entropy module
        for d, n in classes.items():
            self.register_buffer(f"centroids_{d}", torch.zeros(n, u.centroids, u.embed_dim))

    def centroids(self, domain: str) -> torch.Tensor:
        return getattr(self, f"centroids_{domain}")


def build(cfg, model, stages) -> nn.Module:
    from unisemi.data import load_domain
    u = cfg.universal
    dds = {d: load_domain(cfg.data, d) for d in cfg.data.domains}
    classes = {d: dd.num_classes for d, dd in dds.items()}
    state = State(cfg, model, classes)
    for i, d in enumerate(cfg.data.domains):
        if u.init == "pretrain":
            c = pretrained_centroids(cfg, d, stages)
        elif u.init == "random":        # the release without an embedding file: fixed random vectors
            g = torch.Generator().manual_seed(cfg.train.seed * 100 + i)
            c = torch.randn(classes[d], u.centroids, u.embed_dim, generator=g)
        else:
            c = load_embedding_file(u.init, d, tuple(state.centroids(d).shape))
        state.centroids(d).copy_(c)
    first = dds[cfg.data.domains[0]]
    state.update_every = u.update_every or max(1, len(first.labelled) // max(cfg.data.batch_size, 1))
    return state


def load_embedding_file(path: str, domain: str, shape: tuple) -> torch.Tensor:
    """A file {domain: (C, K, d) or (C, d) tensor}, e.g. word vectors or saved centroids."""
    try:
        table = torch.load(path, map_location="cpu")
    except (OSError, RuntimeError) as exc:
        raise ValueError(f"universal.init={path!r}: cannot read the label-embedding file ({exc})") from None
    if domain not in table:
        raise ValueError(f"universal.init={path!r}: no embeddings for domain '{domain}' "
                         f"(has: {', '.join(map(str, table))})")
    t = torch.as_tensor(table[domain], dtype=torch.float32)
    t = t.unsqueeze(1) if t.dim() == 2 else t
    if tuple(t.shape) != shape:
        raise ValueError(f"universal.init={path!r}: domain '{domain}' has shape {tuple(t.shape)}, "
                         f"expected (classes, K, d) = {shape}")
    return t


def scores(emb: torch.Tensor, centroids: torch.Tensor, cfg) -> torch.Tensor:
    """Similarity of pixel embeddings (B, d, h, w) with a domain's label embeddings (C, K, d),
    pooled over the K embeddings of a class -> (B, C, h, w)."""
    u = cfg.universal
    c = centroids
    if u.similarity == "cosine":
        emb, c = F.normalize(emb, dim=1), F.normalize(c, dim=2)
    elif u.released_normalised_label_embeddings:
        c = F.normalize(c, dim=2)
    s = torch.einsum("bdhw,ckd->bckhw", emb, c)
    if u.similarity == "cosine":
        s = s / u.temperature
    return torch.logsumexp(s, 2) if u.k_pooling == "logsumexp" else s.max(2).values


def entropy_terms(emb_by_domain: dict, state, cfg) -> dict[str, torch.Tensor]:
    """{'within/<j>': H over j's labels of j's pixels, 'cross/<j>-><i>': H over i's labels of j's
    pixels}, each a mean over pixels (nats)."""
    out = {}
    for j, emb in emb_by_domain.items():
        for i in state.domains:
            h = entropy_map(scores(emb, state.centroids(i), cfg)).mean()
            out[f"within/{j}" if i == j else f"cross/{j}->{i}"] = h
    return out


def losses(model, state, batch: dict, step: int) -> dict[str, torch.Tensor]:
    u = state.cfg.universal
    lab, unl = batch["labelled"], batch["unlabelled"]
    use_entropy = u.alpha > 0 or u.beta > 0
    names = list(lab)
    parts = [lab[d][0] for d in names] + ([unl[d] for d in names] if use_entropy else [])
    feats = encode_parts(model, parts)           # one encoder pass per image size (usually one)
    terms = {}
    for d, part in zip(names, feats):
        x, y = lab[d]
        logits = model.decode(part, d, x.shape[-2:])["logits"]   # a domain's images, its own head
        terms[f"sup/{d}"] = cross_entropy(logits, y)   # over every output, "None" included
    if not use_entropy:
        return terms
    emb = {}
    for d, part in zip(names, feats[len(names):]):
        xu = unl[d]
        e = state.projection(part["out"])
        if u.released_full_resolution:
            e = F.interpolate(e, size=xu.shape[-2:], mode="bilinear", align_corners=False)
        emb[d] = e
    for name, h in entropy_terms(emb, state, state.cfg).items():
        weight = u.beta if name.startswith("within") else u.alpha
        if weight > 0:
            terms[name] = weight * h
    return terms


def ema_centroids(old: torch.Tensor, new: torch.Tensor, gamma: float) -> torch.Tensor:
    """Eq. 7: c_t = gamma c_{t-1} + (1 - gamma) centroids(current model)."""
    return gamma * old + (1.0 - gamma) * new


@torch.no_grad()
def current_centroids(model, state, domain: str) -> torch.Tensor:
    """Centroids of the labelled pixels of `domain` in the entropy module's embedding space (the
    space the scores live in), at label resolution; K > 1 takes one k-means assignment step from
    the current centres so that centre k stays centre k."""
    from unisemi.data import is_real, labelled_batches, load_domain
    from unisemi.data.transforms import input_scheme, normalize
    from unisemi.methods.universal.embeddings import (MAX_PIXELS_PER_CLASS, capped_class_rows,
                                                      pixel_embeddings)
    dd = load_domain(state.cfg.data, domain)
    was_training = model.training
    model.eval()
    rows, labels = [], []
    # a real dataset's labelled pixels are too many to hold: each batch keeps a seeded share
    batches = -(-len(dd.labelled) // 32)
    cap = -(-MAX_PIXELS_PER_CLASS // max(batches, 1))
    g = torch.Generator().manual_seed(state.cfg.train.seed)
    scheme = input_scheme(state.cfg)
    for x, y in labelled_batches(dd, 32, seed=state.cfg.train.seed):
        e = state.projection(model.encode(normalize(x.to(state.centroids(domain).device), scheme))["out"])
        r, l = pixel_embeddings(e, y.long().to(e.device))
        if is_real(domain):
            r, l = capped_class_rows(r, l, cap, g)
        rows.append(r)
        labels.append(l)
    model.train(was_training)
    rows, labels = torch.cat(rows), torch.cat(labels)
    old = state.centroids(domain)
    k = old.shape[1]
    if k == 1:
        new = class_centroids(rows, labels, old.shape[0], 1)
        return torch.where((torch.bincount(labels, minlength=old.shape[0]) > 0).view(-1, 1, 1), new, old)
    # nearest current centre of the pixel's own class, then the mean of each (class, centre) cell
    own = old[labels]                                                    # (N, K, d)
    assign = ((rows.unsqueeze(1) - own) ** 2).sum(-1).argmin(1)
    cell = labels * k + assign
    total = torch.zeros(old.shape[0] * k, old.shape[2], dtype=rows.dtype, device=rows.device).index_add_(0, cell, rows)
    count = torch.bincount(cell, minlength=old.shape[0] * k).unsqueeze(1).to(rows.dtype)
    new = (total / count.clamp_min(1)).view_as(old)
    return torch.where(count.view(old.shape[0], k, 1) > 0, new, old)


def update(model, state, batch: dict, step: int) -> None:
    u = state.cfg.universal
    if u.gamma >= 1.0 or (u.alpha <= 0 and u.beta <= 0) or (step + 1) % state.update_every:
        return
    for d in state.domains:
        state.centroids(d).copy_(ema_centroids(state.centroids(d), current_centroids(model, state, d), u.gamma))
