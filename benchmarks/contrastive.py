"""Contrastive method speed, two ratios measured side by side in one run:

1. our contrastive module (loss + backward + memory update) against a straightforward per-class
   loop of the same math (unisemi/methods/contrastive/reference.py) at C = 19, psi = 256,
   8000 student features, D = 256 (goal >= 5x, equal loss to 1e-5);
2. one full semi-supervised training step (method.losses + backward + SGD + EMA) against the bare
   network passes the step has to make anyway: the student forward/backward on labelled + strong
   views and the teacher forwards on the unlabelled and labelled images (goal <= 1.15x).

3. against the official release (Shathe/SemiSeg-Contrastive, a local checkout given with
   --release PATH; skipped with a message without it) at Cityscapes shapes: its
   `contrastive_class_to_class_learned_memory` (loss + backward) and
   `FeatureMemory.add_features_from_sample_learned` (memory update) against ours, loaded by path.
   The release calls `.cuda()`; inside this benchmark `torch.Tensor.cuda` is patched to the
   identity while its functions run, so they run on the CPU. Its class selectors get the weights
   of our attention modules, so the two compute the same numbers (checked before timing);
4. --paper: one full step against its bare passes at paper shapes (DeepLabv2-ResNet101, 512x512,
   5 labelled + 5 unlabelled images, 2 strong views), a few steps on the CPU (slow).

Timings of compared functions are interleaved in one process (A, B, A, B, ...) and reported as
medians, so that load from other processes on a shared machine hits both sides alike.

    python benchmarks/contrastive.py [--threads 1] [--release PATH] [--paper] [--skip-laptop] [--device cuda]
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import statistics
import time
from pathlib import Path

import torch

from unisemi.methods.contrastive.attention import ClassAttention
from unisemi.methods.contrastive.loss import contrastive_loss, l1_normalised
from unisemi.methods.contrastive.memory import push, select
from unisemi.methods.contrastive.reference import (attention_scores_loop, contrastive_loss_loop,
                                                   memory_update_loop)


def _sync() -> None:
    # On a GPU the kernels run asynchronously: a clock read needs them finished.
    if torch.cuda.is_available() and torch.get_default_device().type == "cuda":
        torch.cuda.synchronize()


def _timeit(fn, repeat: int) -> float:
    fn()                                        # warm-up
    _sync()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    _sync()
    return (time.perf_counter() - t0) / repeat


def _interleaved(fns: dict, repeat: int) -> dict:
    """Median seconds of each callable, run alternately (one warm-up call each first)."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            _sync()
            t0 = time.perf_counter()
            fn()
            _sync()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def module_ratio(repeat: int = 5):
    torch.manual_seed(0)
    c, psi, n, d, images = 19, 256, 8000, 256, 8
    pred = torch.randn(n, d, requires_grad=True)
    cls = torch.randint(0, c, (n,))
    valid = torch.rand(n) > 0.1
    memory = torch.randn(c, psi, d)
    fill = torch.full((c,), psi)
    fill[-3:] = torch.tensor([0, 17, 100])
    att_pred, att_mem = ClassAttention(c, d, d), ClassAttention(c, d, d)
    cand = torch.randn(n, d)
    cand_cls = torch.randint(0, c, (n,))
    image = torch.arange(n) * images // n
    keep = torch.rand(n) > 0.5
    per_image = 3

    def ours():
        in_mem = torch.arange(psi)[None] < fill[:, None]
        s_pred = att_pred.score(pred.detach(), torch.where(valid, cls, 0), valid)
        w_pred = l1_normalised(s_pred, torch.where(valid, cls, 0), valid, c)
        s_mem = att_mem.score_grouped(memory, in_mem)
        cls_mem = torch.arange(c)[:, None].expand(c, psi)
        w_mem = l1_normalised(s_mem.reshape(-1), cls_mem.reshape(-1), in_mem.reshape(-1), c).view(c, psi)
        loss = contrastive_loss(pred, cls, valid, w_pred, memory, fill, w_mem)
        loss.backward()
        with torch.no_grad():
            score = att_pred.score(cand, cand_cls, keep)
            chosen, order = select(cand_cls, image, keep, score, per_image, c)
            push(memory, fill, cand, cand_cls, chosen, order)
        return loss.detach(), score

    def loop():
        s_pred = attention_scores_loop(att_pred, pred.detach(), cls, valid)
        mem_rows = memory.reshape(-1, d)
        mem_cls = torch.arange(c).repeat_interleave(psi)
        in_mem = (torch.arange(psi)[None] < fill[:, None]).reshape(-1)
        s_mem = attention_scores_loop(att_mem, mem_rows, mem_cls, in_mem).view(c, psi)
        loss = contrastive_loss_loop(pred, cls, valid, s_pred, memory, fill, s_mem)
        loss.backward()
        with torch.no_grad():
            score = attention_scores_loop(att_pred, cand, cand_cls, keep)
            memory_update_loop(memory, fill, cand, cand_cls, image, keep, score, per_image)
        return loss.detach(), score

    a, b = ours()[0], loop()[0]
    t_ours, t_loop = _timeit(ours, repeat), _timeit(loop, repeat)
    # The parts, to see where the time goes.
    in_mem = torch.arange(psi)[None] < fill[:, None]
    w1, wm = torch.ones(n), in_mem.float()
    s1, sm = torch.rand(n), torch.rand(c, psi)
    parts = {
        "loss+backward (no attention)": (
            lambda: contrastive_loss(pred, cls, valid, w1, memory, fill, wm).backward(),
            lambda: contrastive_loss_loop(pred, cls, valid, s1 * 0 + 1, memory, fill, sm * 0 + 1).backward()),
        "attention scores, 8000 rows (no grad)": (
            lambda: att_pred.score(cand, cand_cls, keep),
            lambda: attention_scores_loop(att_pred, cand, cand_cls, keep)),
        "memory select + FIFO push": (
            lambda: push(memory, fill, cand, cand_cls, *select(cand_cls, image, keep, s1, per_image, c)),
            lambda: memory_update_loop(memory, fill, cand, cand_cls, image, keep, s1, per_image)),
    }
    breakdown = {}
    for name, (fast, slow) in parts.items():
        ctx = torch.no_grad() if "no grad" in name or "memory" in name else torch.enable_grad()
        with ctx:
            breakdown[name] = (_timeit(fast, repeat), _timeit(slow, repeat))
    return t_loop / t_ours, t_ours, t_loop, abs(float(a) - float(b)), breakdown


def step_and_bare_passes(M, model, state, opt, batch, xs, xl, xu):
    """Two callables: one full step of the method (losses, backward, SGD, update), and the network
    passes any such step must make (teacher on the unlabelled and labelled images, student
    forward/backward on `xs`, the labelled images + strong views), with SGD."""
    from unisemi.data.transforms import normalize_float
    xs, xl, xu = normalize_float(xs), normalize_float(xl), normalize_float(xu)

    def full():
        terms = M.losses(model, state, batch, step=10)
        opt.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        opt.step()
        M.update(model, state, batch, 10)

    def bare():
        with torch.no_grad():
            state.teacher.eval()
            state.teacher(xu, "city")
            state.teacher(xl, "city")
        out = model(xs, "city")["logits"]
        opt.zero_grad(set_to_none=True)
        out.float().mean().backward()
        opt.step()

    return full, bare


def step_ratio(repeat: int = 20):
    """Full step vs its bare network passes, on the laptop preset (tiny net, 64x128)."""
    from unisemi.config import load_config
    from unisemi.data import load_domain
    from unisemi.methods import contrastive as M
    from unisemi.models import build_model
    from unisemi.optim import build_optimizer, default_groups

    cfg = load_config("contrastive_city", ["contrastive.warmup=0", "train.progress=false"])
    torch.manual_seed(0)
    dd = load_domain(cfg.data, "city")
    model = build_model(cfg.model, {"city": dd.num_classes})
    state = M.build(cfg, model)
    opt = build_optimizer(default_groups(cfg, model, state)[0])
    x, y = dd.fetch("train", dd.labelled[:cfg.data.batch_size])
    xu, _ = dd.fetch("train", dd.unlabelled[:cfg.data.unlabelled_batch_size])
    batch = {"labelled": {"city": (x.float() / 255, y.long())}, "unlabelled": {"city": xu.float() / 255}}
    n_student = cfg.data.batch_size + cfg.contrastive.views * cfg.data.unlabelled_batch_size

    xs = torch.cat([x.float() / 255] + [xu.float() / 255] * (n_student // len(xu)))[:n_student]
    full, bare = step_and_bare_passes(M, model, state, opt, batch, xs, x.float() / 255, xu.float() / 255)
    t_full, t_bare = _timeit(full, repeat), _timeit(bare, repeat)
    return t_full / t_bare, t_full, t_bare


@contextlib.contextmanager
def _cuda_is_identity():
    """The release moves tensors with `.cuda()`; on the CPU that returns the tensor itself (on a
    GPU, with --device cuda, the release runs as written)."""
    if torch.get_default_device().type == "cuda":
        yield
        return
    saved = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self
    try:
        yield
    finally:
        torch.Tensor.cuda = saved


def load_release(path: str):
    """(contrastive_losses, feature_memory) modules of a local release checkout, by file path."""
    mods = []
    for name, rel in (("contrastive_losses", "contrastive_losses.py"), ("feature_memory", "utils/feature_memory.py")):
        spec = importlib.util.spec_from_file_location(f"_release_{name}", Path(path) / rel)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        mods.append(mod)
    return mods


def release_selectors(att_pred: ClassAttention, att_mem: ClassAttention) -> torch.nn.Module:
    """A module with the release's per-class selector attributes (Linear, BN, LeakyReLU(0.2),
    Linear(1)), holding the weights of our batched attention modules."""
    holder = torch.nn.Module()
    for prefix, att in (("contrastive_class_selector_", att_pred), ("contrastive_class_selector_memory", att_mem)):
        c, d, h = att.w1.shape
        for k in range(c):
            lin1, bn, lin2 = torch.nn.Linear(d, h), torch.nn.BatchNorm1d(h), torch.nn.Linear(h, 1)
            with torch.no_grad():
                lin1.weight.copy_(att.w1[k].T)
                lin1.bias.copy_(att.b1[k])
                bn.weight.copy_(att.bn_weight[k])
                bn.bias.copy_(att.bn_bias[k])
                lin2.weight.copy_(att.w2[k][None])
                lin2.bias.copy_(att.b2[k:k + 1])
            holder.add_module(f"{prefix}{k}", torch.nn.Sequential(lin1, bn, torch.nn.LeakyReLU(0.2), lin2))
    return holder.train()


def release_ratio(path: str, repeat: int = 7, keep_fraction: float = 0.7):
    """Ours against the release at Cityscapes shapes: C = 19, psi = 256, D = 256, 8000 student
    features; memory update from 5 x 65 x 65 = 21125 candidates (DeepLabv2 at 512 x 512, batch 5)
    of which `keep_fraction` pass the FQF, N_l = 100 (3 per image and class, 15 per class)."""
    from unisemi.methods.contrastive.memory import needs_ranking
    losses_mod, memory_mod = load_release(path)
    torch.manual_seed(0)
    c, psi, d, n, images, hw = 19, 256, 256, 8000, 5, 65 * 65
    per_image = max(1, round(psi / 100))
    # Skewed classes (road, building, vegetation, ... vs rare ones), as street scenes are.
    prob = 0.8 ** torch.arange(c, dtype=torch.float)
    pred = torch.randn(n, d, requires_grad=True)
    cls = torch.multinomial(prob, n, replacement=True)
    memory = torch.randn(c, psi, d)
    fill = torch.full((c,), psi)
    att_pred, att_mem = ClassAttention(c, d, d).train(), ClassAttention(c, d, d).train()
    m_cand = images * hw
    cand = torch.randn(m_cand, d)
    cand_cls = torch.multinomial(prob, m_cand, replacement=True)
    image = torch.arange(images).repeat_interleave(hw)
    keep = torch.rand(m_cand) < keep_fraction
    valid = torch.ones(n, dtype=torch.bool)
    selectors = release_selectors(att_pred, att_mem)
    bank = memory_mod.FeatureMemory(num_samples=100, dataset="cityscapes", memory_per_class=psi,
                                    feature_size=d, n_classes=c)
    assert bank.per_class_samples_per_image == per_image

    def fresh_bank():
        bank.memory = [memory[k].numpy().copy() for k in range(c)]
    fresh_bank()

    def ours_loss(memory_identity=False, all_classes=False):
        pred.grad = None
        in_mem = torch.arange(psi)[None] < fill[:, None]
        w_pred = l1_normalised(att_pred.score(pred.detach(), cls, valid), cls, valid, c)
        if memory_identity:
            w_mem = in_mem.float()
        else:
            s_mem = att_mem.score_grouped(memory, in_mem)
            cls_mem = torch.arange(c)[:, None].expand(c, psi)
            w_mem = l1_normalised(s_mem.reshape(-1), cls_mem.reshape(-1), in_mem.reshape(-1), c).view(c, psi)
        loss = contrastive_loss(pred, cls, valid, w_pred, memory, fill, w_mem, divide_by_all_classes=all_classes)
        loss.backward()
        return loss.detach()

    def release_loss():
        pred.grad = None
        with _cuda_is_identity():
            loss = losses_mod.contrastive_class_to_class_learned_memory(selectors, pred, cls, c, bank.memory)
        loss.backward()
        return loss.detach()

    def ours_update(lazy=True, **kw):
        with torch.no_grad():
            if lazy:    # score only the candidates of classes with more than they may keep
                score = lambda rows: att_pred.score(cand, torch.where(rows, cand_cls, 0), rows)   # noqa: E731
            else:       # what memory_after_push does today: score every kept candidate first
                score = att_pred.score(cand, torch.where(keep, cand_cls, 0), keep)
            chosen, order = select(cand_cls, image, keep, score, per_image, c, n_images=images,
                                   in_order_when_fits=True, **kw)
            return push(memory, fill, cand, cand_cls, chosen, order, max_new=c * images * per_image)

    def release_update():
        with torch.no_grad(), _cuda_is_identity():
            feats, labels = cand[keep], cand_cls[keep].float()       # the FQF masking at the call site
            bank.add_features_from_sample_learned(selectors, feats, labels, images)

    # Same numbers first: loss and gradient with the release's switches, bank after one update.
    a = ours_loss(memory_identity=True, all_classes=True)
    g = pred.grad.clone()
    b = release_loss()
    loss_diff, grad_diff = abs(float(a) - float(b)), float((g - pred.grad).abs().max())
    fresh_bank()
    new_mem, new_fill = ours_update(lowest=True, over_batch=True)
    release_update()
    bank_equal = all(torch.allclose(new_mem[k, :int(new_fill[k])], torch.from_numpy(bank.memory[k]))
                     for k in range(c))
    fresh_bank()
    ranked = int(needs_ranking(cand_cls, keep, per_image, c, images, True).sum())
    # Timings: ours at its defaults (memory-side attention on, per-image top k) vs the release.
    t = _interleaved({"ours loss": ours_loss, "release loss": release_loss}, repeat)
    t.update(_interleaved({"ours update": ours_update, "ours update (eager scores)": lambda: ours_update(False),
                           "release update": release_update}, repeat))
    t_ours = t["ours loss"] + t["ours update"]
    t_rel = t["release loss"] + t["release update"]
    t_eager = t["ours loss"] + t["ours update (eager scores)"]
    return {"times": t, "module": t_rel / t_ours, "module_eager": t_rel / t_eager,
            "loss_diff": loss_diff, "grad_diff": grad_diff, "bank_equal": bank_equal,
            "candidates": m_cand, "kept": int(keep.sum()), "ranked": ranked}


def paper_step_ratio(steps: int = 2, labelled: int = 5, unlabelled: int = 5, crop: int = 512):
    """Full step vs bare passes at paper shapes: DeepLabv2-ResNet101 (ASPP head), 512 x 512,
    `labelled` + `unlabelled` images, 2 strong views (the student sees labelled + 2 unlabelled)."""
    from unisemi.config import load_config
    from unisemi.methods import contrastive as M
    from unisemi.models import build_model
    from unisemi.optim import build_optimizer, default_groups

    cfg = load_config("contrastive_city", [
        "model.encoder=resnet101", "model.head=aspp", "contrastive.warmup=0", "train.progress=false",
        f"data.batch_size={labelled}", f"data.unlabelled_batch_size={unlabelled}", f"data.size=[{crop}, {crop}]",
        "contrastive.proj_dim=256", "contrastive.attention_hidden=256", "data.n_labelled=100",
        "data.labelled_fraction=0"])
    torch.manual_seed(0)
    c = 19
    model = build_model(cfg.model, {"city": c})
    state = M.State(cfg, model, "city", c, 100)
    opt = build_optimizer(default_groups(cfg, model, state)[0])
    x = torch.rand(labelled, 3, crop, crop)
    y = torch.randint(0, c, (labelled, crop, crop))
    xu = torch.rand(unlabelled, 3, crop, crop)
    batch = {"labelled": {"city": (x, y)}, "unlabelled": {"city": xu}}
    n_student = labelled + cfg.contrastive.views * unlabelled

    xs = torch.cat([x] + [xu] * cfg.contrastive.views)[:n_student]
    full, bare = step_and_bare_passes(M, model, state, opt, batch, xs, x, xu)
    t = _interleaved({"full": full, "bare": bare}, steps)
    return t["full"] / t["bare"], t["full"], t["bare"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--release", default="", help="local checkout of Shathe/SemiSeg-Contrastive")
    p.add_argument("--repeat", type=int, default=7, help="interleaved repeats of the release comparison")
    p.add_argument("--paper", action="store_true", help="also time a step at paper shapes (slow)")
    p.add_argument("--paper-steps", type=int, default=2)
    p.add_argument("--paper-batch", type=int, nargs=2, default=(5, 5), metavar=("LABELLED", "UNLABELLED"))
    p.add_argument("--skip-laptop", action="store_true", help="skip comparisons 1 and 2")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="where comparisons 1 and 3 run (2 and 4 build data and models on the CPU)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.device}")
    if args.device == "cuda":
        torch.set_default_device("cuda")     # every tensor the module comparisons make lives there
        print(f"   {torch.cuda.get_device_name(0)}")
    if not args.skip_laptop:
        laptop(step=args.device == "cpu")
    if not args.release:
        print("3. release comparison skipped: pass --release PATH (a local checkout of Shathe/SemiSeg-Contrastive)")
    elif not (Path(args.release) / "contrastive_losses.py").is_file():
        print(f"3. release comparison skipped: {args.release} has no contrastive_losses.py")
    else:
        r = release_ratio(args.release, args.repeat)
        t = r["times"]
        print(f"3. vs the release at Cityscapes shapes (C=19, psi=256, D=256, 8000 student features; "
              f"{r['candidates']} memory candidates, {r['kept']} FQF-kept, {r['ranked']} in over-full "
              f"classes; 15 kept per class), medians of {args.repeat} interleaved repeats; "
              f"torch.Tensor.cuda patched to the identity for the release:")
        print(f"   same numbers (release switches on): |loss diff| {r['loss_diff']:.1e}, max |grad diff| "
              f"{r['grad_diff']:.1e}, bank after one update equal: {r['bank_equal']}")
        for part in ("loss", "update"):
            print(f"   {part:7s} ours {t['ours ' + part] * 1e3:7.1f} ms  release {t['release ' + part] * 1e3:7.1f} ms"
                  f"  -> ours {t['release ' + part] / t['ours ' + part]:.2f}x the release's speed")
        print(f"   update with eager scores (every kept candidate, as memory_after_push today) "
              f"{t['ours update (eager scores)'] * 1e3:.1f} ms")
        print(f"   whole module ours {r['module']:.2f}x the release's speed (goal >= 1.5x); "
              f"with eager scores {r['module_eager']:.2f}x")
    if args.paper:
        ratio, t_full, t_bare = paper_step_ratio(args.paper_steps, *args.paper_batch)
        print(f"4. paper shapes (DeepLabv2-R101, 512x512, {args.paper_batch[0]} labelled + "
              f"{args.paper_batch[1]} unlabelled x 2 views), medians of {args.paper_steps} interleaved steps: "
              f"full step {t_full:.1f} s vs bare passes {t_bare:.1f} s -> {ratio:.3f}x (goal <= 1.10x)")


def laptop(step: bool = True) -> None:
    ratio, t_ours, t_loop, diff, parts = module_ratio()
    print(f"1. contrastive module: attention + loss + backward + memory update (C=19, psi=256, "
          f"N=8000, D=256): ours {t_ours * 1e3:.1f} ms, per-class loop {t_loop * 1e3:.1f} ms -> "
          f"{ratio:.1f}x (goal >= 5x); |loss difference| {diff:.2e} (goal <= 1e-5)")
    for name, (fast, slow) in parts.items():
        print(f"   {name:40s} ours {fast * 1e3:7.1f} ms  loop {slow * 1e3:7.1f} ms  {slow / fast:5.1f}x")
    if not step:
        print("2. full SSL step: skipped on cuda (it reads the embedded world on the CPU)")
        return
    ratio, t_full, t_bare = step_ratio()
    print(f"2. full SSL step {t_full * 1e3:.1f} ms vs its bare network passes {t_bare * 1e3:.1f} ms "
          f"-> {ratio:.2f}x (goal <= 1.15x; laptop preset: tiny net, 64x128, batch 4 + 2x2 views)")



if __name__ == "__main__":
    main()
