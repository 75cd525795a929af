"""Contrastive method speed, two ratios measured side by side in one run:

1. our contrastive module (loss + backward + memory update) against a straightforward per-class
   loop of the same math (unisemi/methods/contrastive/reference.py) at C = 19, psi = 256,
   8000 student features, D = 256 (goal >= 5x, equal loss to 1e-5);
2. one full semi-supervised training step (method.losses + backward + SGD + EMA) against the bare
   network passes the step has to make anyway: the student forward/backward on labelled + strong
   views and the teacher forwards on the unlabelled and labelled images (goal <= 1.15x).

    python benchmarks/contrastive.py [--threads 1]
"""
from __future__ import annotations

import argparse
import time

import torch

from unisemi.methods.contrastive.attention import ClassAttention
from unisemi.methods.contrastive.loss import contrastive_loss, l1_normalised
from unisemi.methods.contrastive.memory import push, select
from unisemi.methods.contrastive.reference import (attention_scores_loop, contrastive_loss_loop,
                                                   memory_update_loop)


def _timeit(fn, repeat: int) -> float:
    fn()                                        # warm-up
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


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


def step_ratio(repeat: int = 20):
    """Full step vs its bare network passes, on the laptop preset (tiny net, 64x128)."""
    from unisemi.config import load_config
    from unisemi.data import load_domain
    from unisemi.data.transforms import normalize_float
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

    def full():
        terms = M.losses(model, state, batch, step=10)
        opt.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        opt.step()
        M.update(model, state, batch, 10)

    xs = normalize_float(torch.cat([x.float() / 255] + [xu.float() / 255] * (n_student // len(xu)))[:n_student])
    xl, xun = normalize_float(x.float() / 255), normalize_float(xu.float() / 255)

    def bare():
        with torch.no_grad():
            state.teacher.eval()
            state.teacher(xun, "city")
            state.teacher(xl, "city")
        out = model(xs, "city")["logits"]
        opt.zero_grad(set_to_none=True)
        out.float().mean().backward()
        opt.step()

    t_full, t_bare = _timeit(full, repeat), _timeit(bare, repeat)
    return t_full / t_bare, t_full, t_bare


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU")
    ratio, t_ours, t_loop, diff, parts = module_ratio()
    print(f"1. contrastive module: attention + loss + backward + memory update (C=19, psi=256, "
          f"N=8000, D=256): ours {t_ours * 1e3:.1f} ms, per-class loop {t_loop * 1e3:.1f} ms -> "
          f"{ratio:.1f}x (goal >= 5x); |loss difference| {diff:.2e} (goal <= 1e-5)")
    for name, (fast, slow) in parts.items():
        print(f"   {name:40s} ours {fast * 1e3:7.1f} ms  loop {slow * 1e3:7.1f} ms  {slow / fast:5.1f}x")
    ratio, t_full, t_bare = step_ratio()
    print(f"2. full SSL step {t_full * 1e3:.1f} ms vs its bare network passes {t_bare * 1e3:.1f} ms "
          f"-> {ratio:.2f}x (goal <= 1.15x; laptop preset: tiny net, 64x128, batch 4 + 2x2 views)")


if __name__ == "__main__":
    main()
