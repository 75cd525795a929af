"""Label embeddings for the entropy module: PCA, k-means within classes, and the Appendix A recipe
(a domain's own supervised model -> encoder outputs of its labelled pixels -> PCA to d -> upsample
to label resolution -> class-wise centroids, or K k-means centres per class)."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from unisemi.added_fields import drop_added_fields
from unisemi.data.transforms import input_scheme
from unisemi.losses import IGNORE_INDEX

MAX_PIXELS_PER_CLASS = 20000    # k-means and means on a seeded subsample beyond this


def pca(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, components (dim, C)) of rows x (N, C); components are the top right singular
    vectors, sign-fixed so that each one's largest-magnitude entry is positive (reproducible)."""
    mean = x.mean(0)
    _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
    return mean, _signed_components(vh[:dim], dim)


def _signed_components(comps: torch.Tensor, dim: int) -> torch.Tensor:
    """Each component's largest-magnitude entry made positive (reproducible), and zero directions
    appended when there are fewer channels than d."""
    comps = comps * torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
    if comps.shape[0] < dim:
        comps = torch.cat([comps, comps.new_zeros(dim - comps.shape[0], comps.shape[1])])
    return comps


def pca_from_moments(n: int, total: torch.Tensor, gram: torch.Tensor, dim: int):
    """`pca` from the row count, the row sum (C,) and X^T X (C, C) instead of the rows: the
    covariance's top eigenvectors, with `pca`'s sign rule. A real dataset's labelled pixels are
    accumulated batch by batch this way, never held at once."""
    mean = total / n
    cov = gram / n - torch.outer(mean, mean)
    _, vecs = torch.linalg.eigh(cov)               # ascending eigenvalues
    return mean, _signed_components(vecs.flip(1)[:, :dim].T, dim)


def capped_class_rows(rows: torch.Tensor, labels: torch.Tensor, cap: int, g: torch.Generator):
    """At most `cap` seeded rows of each class: what a batch keeps towards the class centres.
    A seeded shuffle, then a stable sort by class; a row is kept if it is among the first `cap` of
    its class (its rank = its position minus where its class starts)."""
    if len(labels) == 0:
        return rows, labels
    perm = torch.randperm(len(labels), generator=g).to(labels.device)
    perm = perm[torch.argsort(labels[perm], stable=True)]
    grouped = labels[perm]
    starts = torch.searchsorted(grouped, grouped, right=False)
    keep = perm[torch.arange(len(grouped), device=labels.device) - starts < cap]
    return rows[keep], labels[keep]


def kmeans(x: torch.Tensor, k: int, iterations: int = 50, seed: int = 0) -> torch.Tensor:
    """Lloyd's k-means with k-means++ seeding; returns (k, D) centres (repeats if N < k)."""
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    if n <= k:
        return x[torch.arange(k) % max(n, 1)] if n else x.new_zeros(k, x.shape[1])
    centres = [x[torch.randint(n, (1,), generator=g)].squeeze(0)]
    for _ in range(1, k):
        d2 = torch.cdist(x, torch.stack(centres)).min(1).values ** 2
        centres.append(x[torch.multinomial(d2 / d2.sum(), 1, generator=g)].squeeze(0))
    c = torch.stack(centres)
    for _ in range(iterations):
        assign = torch.cdist(x, c).argmin(1)
        new = torch.zeros_like(c).index_add_(0, assign, x)
        count = torch.bincount(assign, minlength=k).unsqueeze(1).to(x.dtype)
        new = torch.where(count > 0, new / count.clamp_min(1), c)
        if torch.allclose(new, c):
            break
        c = new
    return c


def class_centroids(emb: torch.Tensor, labels: torch.Tensor, num_classes: int, k: int = 1,
                    seed: int = 0) -> torch.Tensor:
    """(num_classes, k, D) centres of pixel embeddings emb (N, D) per label (N,); a class without
    pixels gets zeros (it scores 0 against every pixel under the dot product)."""
    out = emb.new_zeros(num_classes, k, emb.shape[1])
    g = torch.Generator().manual_seed(seed)
    for c in range(num_classes):          # once per class at init/update time, not in the step
        rows = emb[labels == c]
        if len(rows) > MAX_PIXELS_PER_CLASS:
            rows = rows[torch.randperm(len(rows), generator=g)[:MAX_PIXELS_PER_CLASS]]
        if len(rows) == 0:
            continue
        out[c] = rows.mean(0, keepdim=True) if k == 1 else kmeans(rows, k, seed=seed + c)
    return out


def pixel_embeddings(features: torch.Tensor, labels: torch.Tensor, mean=None, comps=None):
    """Encoder features (B, C, h, w) -> (optionally PCA-reduced) embeddings upsampled to the label
    resolution, as rows (N, D) with their labels (N,), void pixels dropped."""
    if comps is not None:
        b, c, h, w = features.shape
        rows = features.permute(0, 2, 3, 1).reshape(-1, c)
        features = ((rows - mean) @ comps.T).view(b, h, w, -1).permute(0, 3, 1, 2)
    up = F.interpolate(features, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    rows = up.permute(0, 2, 3, 1).reshape(-1, up.shape[1])
    lab = labels.reshape(-1)
    keep = lab != IGNORE_INDEX
    return rows[keep], lab[keep]


@torch.no_grad()
def encoder_rows(model, dd, batch_size: int = 32, scheme: str = "imagenet") -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder outputs at feature resolution of every labelled image of a domain, with labels."""
    from unisemi.data.transforms import normalize
    feats, labels = [], []
    model.eval()
    for i in range(0, len(dd.labelled), batch_size):
        x, y = dd.fetch("train", dd.labelled[i:i + batch_size])
        feats.append(model.encode(normalize(x, scheme))["out"])
        labels.append(y.long())
    return torch.cat(feats), torch.cat(labels)


STAGE = "label-embeddings"
LOADER_KEYS = ("workers", "prefetch", "cache_resized")   # how fast the data is read, not what: outside the recipe
TRAIN_ASIDE = ("checkpoint_every",)   # where the trial checkpoints, not what the prior fit computes
CENTROIDS_FILE = "centroids.pt"


def prior_fit_overrides(cfg, domain: str) -> dict:
    """Appendix A's fit: a supervised model of `domain` alone, on the trial's labelled split."""
    n = cfg.universal.init_iterations
    return {"method": "supervised", "data": {"domains": [domain], "val_images": 1},
            "train": {"iterations": n, "eval_every": n, "out_dir": "", "progress": False}}


def embedding_recipe(sub: dict, cfg, domain: str) -> dict:
    """Everything that determines a domain's label embeddings (the stage's recipe)."""
    u = cfg.universal
    config = {k: ({f: x for f, x in v.items() if f not in LOADER_KEYS} if k == "data" else dict(v))
              for k, v in sub.items() if k in ("data", "model", "optim", "train")}
    for name in TRAIN_ASIDE:
        config.get("train", {}).pop(name, None)
    drop_added_fields(config)       # stored stages keep their hashes (added_fields.py)
    return {"what": "universal-label-embeddings-v1", "domain": domain, "k": u.centroids,
            "d": u.embed_dim, "seed": cfg.train.seed, "config": config}


@torch.no_grad()
def streamed_embeddings(model, dd, embed_dim: int, k: int, seed: int, scheme: str = "imagenet") -> torch.Tensor:
    """`build_embeddings` for a real dataset, whose labelled pixels at label resolution would not
    fit in memory (100 Cityscapes crops are 26M pixels): PCA from moments accumulated over one
    pass, then a second pass keeps a seeded share of each class's embedded pixels per batch
    (MAX_PIXELS_PER_CLASS over all batches) for the class centres."""
    from unisemi.data import labelled_batches
    from unisemi.data.transforms import normalize
    device = next(model.parameters()).device
    model.eval()
    n, total, gram, batches = 0, 0.0, 0.0, 0
    for x, _ in labelled_batches(dd, seed=seed):
        f = model.encode(normalize(x.to(device), scheme))["out"]
        rows = f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]).double()
        n, total, gram, batches = n + len(rows), total + rows.sum(0), gram + rows.T @ rows, batches + 1
    mean, comps = pca_from_moments(n, total, gram, embed_dim)
    mean, comps = mean.float(), comps.float()
    cap = -(-MAX_PIXELS_PER_CLASS // max(batches, 1))
    g = torch.Generator().manual_seed(seed)
    kept, kept_labels = [], []
    for x, y in labelled_batches(dd, seed=seed):
        f = model.encode(normalize(x.to(device), scheme))["out"]
        rows, lab = pixel_embeddings(f, y.long().to(device), mean, comps)
        rows, lab = capped_class_rows(rows.cpu(), lab.cpu(), cap, g)
        kept.append(rows)
        kept_labels.append(lab)
    return class_centroids(torch.cat(kept), torch.cat(kept_labels), dd.num_classes, k, seed=seed)


def build_embeddings(fitted_model, sub_data, domain: str, embed_dim: int, k: int, seed: int,
                     scheme: str = "imagenet") -> torch.Tensor:
    """PCA of the fitted model's encoder outputs on the labelled pixels, then class centres;
    `scheme`: the fit's input normalisation (data.normalize)."""
    from unisemi.data import is_real, load_domain
    dd = load_domain(sub_data, domain)
    if is_real(domain):
        return streamed_embeddings(fitted_model, dd, embed_dim, k, seed, scheme)
    feats, labels = encoder_rows(fitted_model, dd, scheme=scheme)
    c = feats.shape[1]
    mean, comps = pca(feats.permute(0, 2, 3, 1).reshape(-1, c), embed_dim)
    rows, lab = pixel_embeddings(feats, labels, mean, comps)
    return class_centroids(rows, lab, dd.num_classes, k, seed=seed)


def pretrained_centroids(cfg, domain: str, stages) -> torch.Tensor:
    """Appendix A for one domain, as the `label-embeddings` stage of this recipe."""
    sub = stages.resolve(prior_fit_overrides(cfg, domain))
    recipe = embedding_recipe(sub, cfg, domain)

    def build(folder: Path) -> None:
        result = stages.fit(sub)
        sub_data = result["config"].data
        u = cfg.universal
        centroids = build_embeddings(result["model"], sub_data, domain, u.embed_dim, u.centroids,
                                     cfg.train.seed, input_scheme(result["config"]))
        torch.save(centroids.cpu(), folder / CENTROIDS_FILE)

    path = stages.get(STAGE, recipe, build, label=f"{STAGE}/{domain}") / CENTROIDS_FILE
    return load_centroids(path)


def load_centroids(path: Path) -> torch.Tensor:
    try:
        return torch.load(path, map_location="cpu")
    except Exception as exc:  # noqa: BLE001  - any unreadable file names the stage to rebuild
        raise RuntimeError(f"{path}: unreadable label-embedding stage ({exc.__class__.__name__}); "
                           f"rebuild it with: python -m unisemi stages rebuild {path.parent.name}") from None


def rebuild_stage(recipe: dict, fit, configure=None) -> Path:
    """`python -m unisemi stages rebuild label-embeddings-<hash>`: refit and recompute from the
    stored recipe alone (`fit(values)` is the training loop on a config dict)."""
    from unisemi.stages import stage
    sub = {"method": "supervised", **recipe["config"]}

    def build(folder: Path) -> None:
        result = fit(sub)
        centroids = build_embeddings(result["model"], result["config"].data, recipe["domain"],
                                     recipe["d"], recipe["k"], recipe["seed"],
                                     input_scheme(result["config"]))
        torch.save(centroids.cpu(), folder / CENTROIDS_FILE)

    return stage(STAGE, recipe, build, force=True)
