"""The one training loop: `fit(config) -> result`, used by the CLI, by tests and by Ray workers.

Setup builds data, model, the method's state (asking for any stages it builds on) and its update
groups from the config; then a plain loop: sample batches, ask the method for its weighted loss
terms (per group), backpropagate each group's loss into that group's parameters only, average
gradients over ranks, step each group's optimiser on its own poly schedule in the method's order,
let the method write its state (teacher, memory bank, centroids) in `update`, and evaluate every
`train.eval_every` iterations. Ray Train calls this same function inside each worker, with a
`report` callback; nothing here knows Ray, and nothing here names a method.
"""
from __future__ import annotations

import contextlib
import functools
import random
import time
from pathlib import Path

import numpy as np
import torch

from unisemi import checkpoint, ddp, pretrain
from unisemi.device import resolve_device  # noqa: F401  (also unisemi.train.resolve_device)
from unisemi.config import Config, build_config, config_hash, to_dict, with_overrides
from unisemi.data import is_real, load_domain
from unisemi.data.sampler import IndexSampler
from unisemi.data.transforms import input_scheme, normalize, random_hflip
from unisemi.evaluate import evaluate_domain, evaluate_pairs, summarize
from unisemi.methods import get_method, head_sizes
from unisemi.models import build_model
from unisemi.optim import build_optimizer, check_groups, default_groups, set_lr, step_groups, terms_by_group
from unisemi.stages import Stages, stage_hash


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN/inf loss; the run is stopped and marked failed."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Batches:
    """Per-domain samplers of labelled (and, if the method wants them, unlabelled) batches.

    `data.batch_size` is per rank. Every rank runs the same seeded index streams for the global
    batch of world_size x B images and takes its own slice, so W ranks see exactly the images
    (and flips) of one process with a batch of W x B, and never the same image twice in a step."""

    def __init__(self, cfg: Config, domains: dict, needs_unlabelled: bool, device, rank: int,
                 raw: bool = False, extra_labelled: dict | None = None, world_size: int = 1,
                 relabel=None, label_files=None):
        seed = cfg.train.seed * 1_000
        self.relabel = relabel          # (domain, pool indices, labels) -> labels, before the flip
        self.part = (rank, world_size)
        self.domains = {**domains, **(extra_labelled or {})}
        self.device, self.hflip, self.raw = device, cfg.data.hflip, raw
        self.scheme = input_scheme(cfg)     # what the model's weights were trained on (data.normalize)
        self.aug = torch.Generator().manual_seed(seed + 17)
        b, bu = cfg.data.batch_size, cfg.data.unlabelled_batch_size
        self.sizes = {"labelled": b, "unlabelled": bu}
        # A real dataset streams from worker processes (flips included); the embedded world is
        # indexed and flipped here, as it always was.
        pin = torch.device(device).type == "cuda"
        self.labelled, self.unlabelled, self.streams = {}, {}, {"labelled": {}, "unlabelled": {}}
        for i, (d, dd) in enumerate(self.domains.items()):
            if not len(dd.labelled):
                # A domain without labelled images (#City = 0: unsupervised DA) has no labelled
                # batch; methods that allow it (TRAINS_WITHOUT_LABELS) find its key absent.
                continue
            if is_real(d):
                # {pool index: label file} a method generated, read by the stream's workers in
                # place of the ground truth (before the crop, which the file then follows)
                files = label_files(d) if label_files is not None else None
                if relabel is not None and files is None:
                    # the stream's workers crop before the loop sees a label: an in-memory relabel
                    # could not follow, and training on the ground truth instead would be silent
                    raise ValueError(f"data.domains: '{d}' is a real dataset, whose streams take a "
                                     f"method's generated labels only as files (the method's "
                                     f"`label_files`); this method relabels embedded-world domains only")
                self.streams["labelled"][d] = dd.stream("labelled", b, seed + 31 * i, self.part, pin,
                                                        replacements=files)
            else:
                self.labelled[d] = IndexSampler(dd.labelled, b * world_size, seed + 31 * i)
        if needs_unlabelled:    # the evaluated domains only; an extra (source) domain is all labelled
            for i, (d, dd) in enumerate(domains.items()):
                if is_real(d):
                    self.streams["unlabelled"][d] = dd.stream("unlabelled", bu, seed + 31 * i + 7, self.part, pin)
                else:
                    # A fully labelled domain has no rest of the pool: its unlabelled stream draws
                    # from the whole pool, labels unread (ASS's D_g at #City = all, docs/ass.md).
                    pool = dd.unlabelled if len(dd.unlabelled) else dd.labelled
                    self.unlabelled[d] = IndexSampler(pool, bu * world_size, seed + 31 * i + 7)

    def _mine(self, indices: torch.Tensor, kind: str) -> torch.Tensor:
        rank, b = self.part[0], self.sizes[kind]
        return indices[rank * b:(rank + 1) * b]

    def next(self) -> dict:
        batch = {"labelled": {}, "unlabelled": {}}
        for d in self.domains:
            if d in self.streams["labelled"]:
                x, y = self.streams["labelled"][d].next()
            elif d in self.labelled:
                indices = self._mine(self.labelled[d].next(), "labelled")
                x, y = self.domains[d].fetch("train", indices)
                if self.relabel is not None:
                    y = self.relabel(d, indices, y)
                if self.hflip:
                    x, y = random_hflip(x, y, self.aug, self.part)
            else:
                continue
            batch["labelled"][d] = (self._image(x), y.to(self.device, non_blocking=True).long())
        for d in self.domains:
            if d in self.streams["unlabelled"]:
                (x,) = self.streams["unlabelled"][d].next()
            elif d in self.unlabelled:
                # labels are never read
                x, _ = self.domains[d].fetch("train", self._mine(self.unlabelled[d].next(), "unlabelled"))
            else:
                continue
            batch["unlabelled"][d] = self._image(x)
        return batch

    def _image(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised float images, or float [0, 1] ones for methods that augment them first."""
        x = x.to(self.device, non_blocking=True)
        return x.float().div_(255.0) if self.raw else normalize(x, self.scheme)

    def state_dict(self) -> dict:
        return {"aug": self.aug.get_state(),
                "labelled": {d: s.state_dict() for d, s in self.labelled.items()},
                "unlabelled": {d: s.state_dict() for d, s in self.unlabelled.items()},
                "streams": {k: {d: s.state_dict() for d, s in kind.items()}
                            for k, kind in self.streams.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.aug.set_state(state["aug"])
        for d, s in self.labelled.items():
            s.load_state_dict(state["labelled"][d])
        for d, s in self.unlabelled.items():
            s.load_state_dict(state["unlabelled"][d])
        for k, kind in self.streams.items():
            for d, s in kind.items():
                s.load_state_dict(state["streams"][k][d])

    def close(self) -> None:
        """End the real streams' threads and worker processes (the embedded world has none)."""
        for kind in self.streams.values():
            for s in kind.values():
                s.close()


def evaluate_all(cfg: Config, model, domains: dict, device, iteration: int) -> dict:
    """One evaluation record: per-domain metrics (each domain scored by its own head)."""
    rank, size = ddp.world()
    record = {"iteration": iteration, "domains": {}}
    norm = functools.partial(normalize, scheme=input_scheme(cfg))
    for d, dd in domains.items():
        shard = dd.val[rank::size]  # each rank scores a shard; confusion matrices are summed
        if is_real(d):
            conf = evaluate_pairs(model, dd.val_batches(shard), d, dd.num_classes, device, norm)
        else:
            images, labels = dd.fetch("val", shard)
            conf = evaluate_domain(model, images, labels, d, dd.num_classes, cfg.eval.batch_size,
                                   device, norm)
        conf = ddp.sum_over_ranks(conf.to(device)).cpu()
        record["domains"][d] = summarize(conf, dd.classes, cfg.eval.absent_as_zero, cfg.eval.classes)
    mious = [m["miou"] for m in record["domains"].values()]
    record["miou_sum"] = float(sum(mious))
    record["miou_mean"] = float(sum(mious) / len(mious))
    return record


def mean_losses(loss_sums: dict, steps: int) -> dict:
    """Each term's mean over the interval's steps and over ranks (one all-reduce per evaluation)."""
    if not loss_sums:
        return {}
    names = list(loss_sums)
    sums = torch.stack([torch.as_tensor(loss_sums[k], dtype=torch.float64) for k in names])
    sums = ddp.sum_over_ranks(sums) / ddp.world()[1]
    return {k: float(v) / steps for k, v in zip(names, sums.tolist())}


def autocast(cfg: Config, device: torch.device):
    if device.type != "cuda" or cfg.train.amp == "off":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if cfg.train.amp == "bf16" else torch.float16)


def fit(cfg: Config, report=None, resume: str | Path | None = None, out_dir: str | Path | None = None,
        stop_after: int | None = None, keep=None) -> dict:
    """Train and evaluate; returns {'final', 'best', 'history', 'timing', 'splits', 'config_hash'}.

    `report(record, save_checkpoint)` is called after every evaluation (Ray Train passes one);
    `save_checkpoint(dir)` writes a full checkpoint there. `resume` is a checkpoint file or dir.
    `keep(iteration, save_checkpoint)` is called every `train.checkpoint_every` iterations between
    evaluations (on every rank, as a report is), so a lost node costs at most that many iterations.
    `stop_after` ends the run early at that iteration, as an interruption would (tests, budgets).
    """
    t_start = time.perf_counter()
    started_at = time.time()   # epoch seconds: the runner subtracts the trial's launch time from it
    rank, world_size = ddp.world()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = resolve_device(cfg.train.device)
    seed_everything(cfg.train.seed)
    method = get_method(cfg.method)

    t0 = time.perf_counter()
    domains = {d: load_domain(cfg.data, d) for d in cfg.data.domains}
    if not getattr(method, "TRAINS_WITHOUT_LABELS", False) and any(not len(dd.labelled) for dd in domains.values()):
        raise ValueError(f"data.n_labelled / data.labelled_fraction leave a domain of {list(domains)} without "
                         f"labelled images, and method '{cfg.method}' trains on them")
    model = build_model(cfg.model, head_sizes(cfg, domains)).to(device)
    stages = prior_stages(cfg)
    if str(cfg.model.pretrained).strip().lower() == "synthetic":
        stages.used[pretrain.STAGE] = stage_hash(pretrain.recipe(pretrain.config_for(cfg.model)))
    state = method.build(cfg, model, stages).to(device)
    ddp.broadcast_state(model)
    ddp.broadcast_state(state)
    groups = getattr(method, "groups", default_groups)(cfg, model, state)
    check_groups(groups)
    optimizers = {g.name: build_optimizer(g) for g in groups}
    fp16 = device.type == "cuda" and cfg.train.amp == "fp16"
    scalers = {g.name: torch.amp.GradScaler("cuda", enabled=fp16) for g in groups}
    update = getattr(method, "update", None)
    extra = {d: load_domain(dc, d) for d, dc in getattr(method, "extra_labelled", lambda c: {})(cfg).items()}
    relabel = getattr(method, "relabel", None)
    label_files = getattr(method, "label_files", None)
    batches = Batches(cfg, domains, method.NEEDS_UNLABELLED, device, rank,
                      raw=getattr(method, "RAW_IMAGES", False), extra_labelled=extra,
                      world_size=world_size,
                      relabel=(lambda d, i, y: relabel(state, d, i, y)) if relabel else None,
                      label_files=(lambda d: label_files(state, d)) if label_files else None)
    splits = {d: {"split_id": dd.split_id, "split_hash": dd.split_hash, "n_labelled": len(dd.labelled)}
              for d, dd in domains.items()}
    timing = {"setup": time.perf_counter() - t0, "data": 0.0, "train": 0.0, "eval": 0.0}
    history, best, start = [], None, 0
    loss_sums, loss_steps = {}, 0  # interval means of each term, read at evaluations only
    resumed_nonfinite = False

    def save_checkpoint(where, step):
        return checkpoint.save(where, {
            "step": step, "model": model.state_dict(), "state": state.state_dict(),
            "optimizers": {n: o.state_dict() for n, o in optimizers.items()},
            "scalers": {n: sc.state_dict() for n, sc in scalers.items()},
            "batches": batches.state_dict(), "rng": checkpoint.rng_state(),
            "history": history, "best": best, "timing": timing, "config": to_dict(cfg),
            "loss_sums": loss_sums, "loss_steps": loss_steps, "nonfinite": bool(nonfinite)})

    if resume is not None:
        ck = checkpoint.load(resume)
        model.load_state_dict(ck["model"])
        state.load_state_dict(ck["state"])
        for name, opt in optimizers.items():
            opt.load_state_dict(ck["optimizers"][name])
            scalers[name].load_state_dict(ck["scalers"][name])
        batches.load_state_dict(ck["batches"])
        checkpoint.set_rng_state(ck["rng"])
        history, best, start, timing = ck["history"], ck["best"], ck["step"], ck["timing"]
        loss_sums, loss_steps = ck["loss_sums"], ck["loss_steps"]
        resumed_nonfinite = bool(ck.get("nonfinite", False))

    total = cfg.train.iterations
    # a checkpoint between evaluations carries a non-finite loss not yet raised
    nonfinite = torch.tensor(resumed_nonfinite, dtype=torch.bool, device=device)
    progress = _progress(cfg, start, total, rank)
    model.train()
    for step in range(start, total):
        lrs = {g.name: set_lr(optimizers[g.name], g, step, total) for g in groups}
        lr = lrs[groups[0].name]
        t0 = time.perf_counter()
        batch = batches.next()
        t1 = time.perf_counter()
        with autocast(cfg, device):
            per_group = terms_by_group(method.losses(model, state, batch, step), groups)
        # Logged term names carry their group when there are several ("disc:adv").
        terms = {(k if len(groups) == 1 else f"{name}:{k}"): v
                 for name, group_terms in per_group.items() for k, v in group_terms.items()}
        group_loss = {name: sum(t.values()) for name, t in per_group.items() if t}
        # Accumulated on device and read only at evaluations: no host sync per step.
        for loss in group_loss.values():
            nonfinite |= ~torch.isfinite(loss.detach())
        for k, v in terms.items():
            loss_sums[k] = loss_sums.get(k, 0.0) + v.detach()
        loss_steps += 1
        step_groups(groups, group_loss, optimizers, scalers, ddp.average_gradients)
        if update is not None:
            update(model, state, batch, step)
        timing["data"] += t1 - t0
        timing["train"] += time.perf_counter() - t1
        progress.update(1)

        done = step + 1
        if done % cfg.train.eval_every == 0 or done == total:
            if bool(nonfinite):  # the one sync per evaluation
                raise NonFiniteLoss(f"non-finite loss at or before iteration {done} "
                                    f"(terms: {', '.join(terms)})")
            t0 = time.perf_counter()
            ddp.broadcast_state(model)
            record = evaluate_all(cfg, model, domains, device, done)
            record["splits"] = splits
            record["resumed_from"] = start       # 0 = this process started from scratch
            record["started_at"] = started_at
            record["loss"] = mean_losses(loss_sums, loss_steps)
            loss_sums, loss_steps = {}, 0
            record["lr"] = lr
            record["lrs"] = lrs
            record["weights_hash"] = getattr(model, "weights_hash", None)
            record["stages"] = dict(stages.used)
            timing["eval"] += time.perf_counter() - t0
            record["timing"] = dict(timing)      # cumulative so far (survives resume)
            history.append(record)
            if best is None or record["miou_sum"] > best["miou_sum"]:
                best = record
            progress.set_postfix(miou=f"{record['miou_mean']:.1f}")
            target = out_dir or cfg.train.out_dir
            if target and rank == 0:
                save_checkpoint(target, done)
            if report is not None:
                report(record, lambda where, s=done: save_checkpoint(where, s))
        elif cfg.train.checkpoint_every and done % cfg.train.checkpoint_every == 0:
            target = out_dir or cfg.train.out_dir
            if target and rank == 0:
                save_checkpoint(target, done)
            if keep is not None:
                keep(done, lambda where, s=done: save_checkpoint(where, s))
        if stop_after is not None and done >= stop_after:
            break
    progress.close()
    batches.close()
    timing["total"] = time.perf_counter() - t_start
    return {"final": history[-1], "best": best, "history": history, "timing": timing,
            "config_hash": config_hash(cfg), "config": cfg, "model": model, "state": state,
            "optimizers": optimizers,
            "splits": splits, "weights_hash": getattr(model, "weights_hash", None),
            "stages": dict(stages.used)}


def prior_stages(cfg: Config) -> Stages:
    """The stage handle a method's `build` gets: earlier fits are this loop, run on the trial's
    config with the stage's overrides (so methods never import this module)."""
    def resolve(overrides: dict) -> dict:
        return to_dict(with_overrides(cfg, overrides))

    def fit_values(values: dict) -> dict:
        return fit(build_config(values, "stage config"))

    return Stages(resolve=resolve, fit=fit_values)


def _progress(cfg: Config, start: int, total: int, rank: int):
    from tqdm import tqdm
    return tqdm(total=total, initial=start, disable=not cfg.train.progress or rank != 0,
                desc="train", unit="it", dynamic_ncols=True, leave=False)
