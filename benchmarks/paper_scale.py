"""What every table costs at paper scale: writes docs/paper_scale.md from unisemi/ablation/cost.py.

    python benchmarks/paper_scale.py --write docs/paper_scale.md    # or no --write: print it

Every figure is computed here, from the specs' paper profiles; nothing is typed in by hand except
the contrastive paper's own numbers, quoted beside ours for the cross-check.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unisemi.ablation import cost  # noqa: E402
from unisemi.ablation.spec import SUITES, all_specs, expand, load_spec  # noqa: E402
from unisemi.config import build_config  # noqa: E402

# Alonso et al., ICCV 2021, Sec. 5.4 (../shared/papers/contrastive_2021.txt): GFLOPs of one
# training step with one labelled and one unlabelled 512x512 image, and its parts.
PAPER_STEP_GFLOPS = 1151.19
PAPER_FORWARD_GFLOPS = 372.04
PAPER_CONTRASTIVE_GFLOPS = 35.07


def fmt_flops(f: float) -> str:
    return f"{f / 1e12:.2f} T" if f >= 1e12 else f"{f / 1e9:.1f} G"


def fmt_range(values, fmt) -> str:
    lo, hi = min(values), max(values)
    return fmt(lo) if fmt(lo) == fmt(hi) else f"{fmt(lo)} – {fmt(hi)}"


def suite_section(suite: str, gpu) -> tuple[list[str], float, list]:
    specs = [(t, p) for s, t, p in all_specs() if s == suite]
    if not specs:
        return [f"No `ablations/{suite}/` spec exists yet.", ""], 0.0, []
    lines = ["| table | trials (cells x seeds) | iterations | FLOPs / step | est. step time | device-hours |",
             "|---|---|---|---|---|---|"]
    notes, total, examples = [], 0.0, []
    for table, path in specs:
        spec = load_spec(str(path))
        priced, pending = cost.price_table(spec, gpu=gpu)
        hours = sum(p.device_hours for p in priced)
        total += hours
        cells = sum(len(p.cells) for p in priced)
        trials = sum(p.trials for p in priced)
        lines.append(f"| {table} | {trials} ({cells} x {trials // max(cells, 1)}"
                     f"{'+' if trials % max(cells, 1) else ''}) "
                     f"| {fmt_range([p.iterations for p in priced], str)} "
                     f"| {fmt_range([p.flops for p in priced], fmt_flops)} "
                     f"| {fmt_range([p.step_s for p in priced], lambda s: f'{s:.3g} s')} | {hours:.3g} |")
        set_keys = (spec.raw.get("profiles") or {}).get("paper", {}).get("set") or {}
        if "train.iterations" not in set_keys:
            notes.append(f"{table}: the paper profile sets no `train.iterations`, so the schedule is the "
                         f"preset's ({spec.raw['preset']}): a laptop value, not the paper's.")
        from unisemi.data.synthetic import DOMAINS
        synthetic = sorted({f"{c}: {k} {h}x{w}" for p in priced for k, (h, w) in p.inputs.items()
                            if k in DOMAINS for c in p.cells})
        if synthetic:
            notes.append(f"{table}: at the paper profile these cells still read a synthetic domain, "
                         f"priced at its rendered size: {'; '.join(synthetic)}.")
        if pending:
            reference = sum(r.startswith("paper-only") for r in pending.values())
            other = sorted({r for r in pending.values() if not r.startswith("paper-only")})
            parts = ([f"{reference} paper-only reference cell(s), never run"] if reference else []) + \
                [f"{sum(v == r for v in pending.values())} cell(s): {r}" for r in other]
            notes.append(f"{table}: not priced: " + "; ".join(parts) + ".")
        examples.append((table, priced))
    lines.append(f"| **total** | | | | | **{total:.3g}** |")
    lines.append("")
    lines += [f"- {n}" for n in notes] + ([""] if notes else [])
    return lines, total, examples


def step_breakdown(table: str, p) -> list[str]:
    lines = [f"`{table}`, cell `{p.cells[0]}` ({fmt_flops(p.flops)}FLOPs per step, inputs "
             + ", ".join(f"{k} {h}x{w}" for k, (h, w) in p.inputs.items()) + "):", "",
             "| pass | FLOPs per step |", "|---|---|"]
    lines += [f"| {t.what} | {fmt_flops(t.flops)} |" for t in p.terms]
    return lines + [""]


def cross_check() -> list[str]:
    """The contrastive paper's per-step count, re-done on its own terms (1 labelled + 1 unlabelled
    image, forward only, one strong view) and then as our step runs."""
    spec = load_spec("contrastive/table5")
    trials, _ = expand(spec, "paper", only={"losses": {"sup_pseudo_ent_contr"}})
    cfg = build_config(trials[0].config, "cross-check")
    one = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, batch_size=1, unlabelled_batch_size=1),
                              contrastive=dataclasses.replace(cfg.contrastive, views=1))
    dom = cost.domain_info(cfg.data.domains[0], cfg)
    fwd, feat = cost.model_pass(cfg.model, dom.classes, dom.size, False)
    fwd65 = cost.model_pass(cfg.model, dom.classes, (513, 513), False)[0]
    push, module = cost.contrastive_module(one, dom.classes, feat, 1, 2, backward=False)
    paper_like = 3 * fwd + push + module
    ours = 4 * fwd + push + module
    full, _, _ = cost.flops_per_step(cfg)
    b, bu, v = cfg.data.batch_size, cfg.data.unlabelled_batch_size, cfg.contrastive.views
    g = 1e9
    return [
        f"Configuration: `contrastive/table5` paper profile (DeepLabv2-ResNet-101, output stride 8, "
        f"{dom.dataset} {dom.size[0]}x{dom.size[1]}, {dom.classes} classes).", "",
        "| quantity | paper (GFLOPs) | ours (GFLOPs) |", "|---|---|---|",
        f"| one forward pass, 512x512 | {PAPER_FORWARD_GFLOPS} | {fwd / g:.2f} ({fwd / g / PAPER_FORWARD_GFLOPS - 1:+.1%}) |",
        f"| contrastive module, forward (1 labelled + 1 unlabelled) | {PAPER_CONTRASTIVE_GFLOPS} | {(push + module) / g:.2f} |",
        f"| step as the paper counts it: 3 forwards + contrastive module | {PAPER_STEP_GFLOPS} | "
        f"{paper_like / g:.2f} ({paper_like / g / PAPER_STEP_GFLOPS - 1:+.1%}) |",
        f"| the same step with the teacher's forward over the labelled image (memory push), as our "
        f"`losses()` runs it | — | {ours / g:.2f} |",
        f"| our paper-profile training step: batch {cfg.data.batch_size} labelled + "
        f"{cfg.data.unlabelled_batch_size} unlabelled x {cfg.contrastive.views} views, forward + backward | — | "
        f"{full / g:.0f} |", "",
        f"- Network passes per step of the paper profile, read off `contrastive.losses()`: **3 passes "
        f"over {bu + b + b + v * bu} images**: the teacher forward over the {bu} unlabelled images "
        f"(pseudo-labels), the teacher forward over the {b} labelled images (memory push), and one "
        f"student forward + backward over {b} labelled + {v} x {bu} strong views; plus the contrastive heads.",
        f"- We count 2 FLOPs per multiply-add. The paper's forward is within 2% of ours, so it counts "
        f"the same way (multiply-adds alone would be half). The release's `ceil_mode` max-pool gives a "
        f"65x65 feature map at 512x512, where ours gives 64x64. At 513x513 ours is also 65x65 and "
        f"counts {fwd65 / g:.2f} ({fwd65 / g / PAPER_FORWARD_GFLOPS - 1:+.1%}). The paper's figure lies "
        f"between the two.",
        "- The paper counts forwards only, at one image each. A step as trained has each pass's "
        "backward (about 2x its forward, except where no gradient flows: the teacher) and the "
        "paper's batches, so it is about "
        f"{full / paper_like:.0f}x the paper's figure.",
        "- Our contrastive module counts less than the paper's 35.07 (of which 10.52 is the distance "
        "to the memory bank). Our loss is factorised (unisemi/methods/contrastive/loss.py: per-class "
        f"sums, never the N x psi distance matrix), so that part nearly vanishes. The module is "
        f"{PAPER_CONTRASTIVE_GFLOPS / PAPER_STEP_GFLOPS:.1%} of the paper's step and "
        f"{(push + module) / paper_like:.1%} of ours.",
        ""]


def protocol_sizes() -> str:
    """Each real dataset's training input under its protocol, e.g. 'cityscapes 512x512'."""
    from unisemi.config import DataConfig
    from unisemi.data.real import DATASETS
    return ", ".join(f"{n} {'x'.join(map(str, cost.train_input(n, DataConfig())))}" for n in DATASETS)


def render(gpu=cost.A100) -> str:
    out = ["# What a paper-scale run costs", "",
           "Generated by `python benchmarks/paper_scale.py --write docs/paper_scale.md` from the specs' "
           "`paper` profiles and `unisemi/ablation/cost.py`; `python ablations/run.py SUITE/TABLE "
           "--profile paper --dry-run` prints the same figures for one table. Regenerate after a spec "
           "or a method changes.", "",
           "**device-hours = trials x iterations x step time**, trials = runnable cells x seeds (the "
           "spec's seeds; `--seeds N` scales them), on one GPU class:", "",
           f"- **{gpu.describe('off')}.**",
           "- Step time = FLOPs per training step / sustained FLOP/s. No GPU measurement is stored "
           "for any paper config yet. When finished trials with device cuda are in the results store, "
           "`--dry-run` uses their measured (train + data) seconds per iteration instead, per config.",
           "", "## Method and assumptions", "",
           "- FLOPs: `torch.utils.flop_counter.FlopCounterMode` over the real modules. The model is "
           "built on the `meta` device, so only shapes are computed and no weights or data are "
           "needed (about 1 s for ResNet-101 at 512x512). It is counted at batch 1, since convolution "
           "FLOPs are linear in the batch, and cached per (model config, classes, input shape), so "
           "a table whose cells share a model counts it once. The contrastive heads run on CPU in "
           "float64 (see `step_flops.contrastive_module`). It counts matrix products and convolutions at "
           "2 FLOPs per multiply-add. Elementwise ops, norms, interpolation, augmentation and the "
           "optimiser are not counted: they are memory-bound, and the utilisation assumption covers them.",
           "- Forward and backward are counted by running the backward, so a pass without "
           "gradients (a teacher) costs one forward. The image's gradient is never computed. A map's "
           "gradient is computed where G's adversarial term flows back through a discriminator.",
           "- Passes per step are read off each method's `losses()` (`unisemi/ablation/step_flops.py` STEPS):",
           "  - supervised: one student fwd+bwd over every domain's labelled batch;",
           "  - finetune: the source phase, then the target phase, weighted by `finetune.source_fraction`;",
           "  - universal: the labelled batches fwd+bwd, plus, with alpha or beta > 0, the unlabelled "
           "batches through the encoder and the entropy module. With gamma < 1 there is an encoder "
           "forward over the labelled set per update. With `init: pretrain`, the Appendix A "
           "pre-fit is spread over the run;",
           "  - contrastive: a teacher forward over the unlabelled batch (pseudo-labels) and one "
           "student fwd+bwd over labelled (+ DA source) + `views` x unlabelled. With lambda_contr > 0 "
           "there is a teacher forward over the labelled batch (memory push) and, after the warm-up, "
           "the contrastive heads fwd+bwd (the count at the paper profile is in the cross-check below);",
           "  - ass: the source and target model passes fwd+bwd, D_g on the softmax maps (G's term "
           "and D's), and D_s on the features.",
           "- Training inputs: what the data layer feeds the model (`unisemi/data/real.py` "
           "DATASETS, or the config's `data.crop` / `data.resize`). That is the crop, else the resize, "
           "else the files' own size (`cost.NATIVE_SIZE`). With no override: " + protocol_sizes() + ". "
           "Synthetic domains train at `data.size` or their default size.",
           "- Real datasets are priced without their files: class counts and train-set sizes come "
           "from the source modules' `CLASSES` and `EXPECTED`.",
           "- GPU: an fp32 config (`train.amp: off`, every spec today) is priced at the A100's TF32 "
           "peak, because PyTorch runs convolutions on TF32 tensor cores by default "
           "(`cudnn.allow_tf32`). bf16/fp16 configs are priced at 312 TFLOP/s. The 35% "
           "utilisation is an assumption, not a measurement. Step time, and so the bill, scales as "
           "1 / utilisation: at 50% every figure below is 0.7x.",
           "- Not included: evaluation passes (every `train.eval_every`), data loading, checkpoints, "
           "cluster start-up.",
           "- Stages (the universal label-embedding pre-fit) are counted in every trial that uses "
           "them. Trials with the same stage recipe build it once, so this is an upper bound.",
           "- DDP over N devices splits the same FLOPs, so device-hours are unchanged (ideal scaling). "
           "Wall time is device-hours / devices.", ""]
    out += ["## Cross-check against the contrastive paper (1151 GFLOPs per step)", ""] + cross_check()
    grand = 0.0
    breakdowns = []
    for suite in SUITES:
        lines, total, examples = suite_section(suite, gpu)
        grand += total
        out += [f"## {suite}", ""] + lines
        if examples:
            table, priced = max(examples, key=lambda e: max(p.flops for p in e[1]))
            breakdowns += step_breakdown(table, max(priced, key=lambda p: p.flops))
    out += [f"**All suites: {grand:.3g} device-hours ({grand / 24:.3g} device-days) on one {gpu.name} "
            f"at the assumptions above.**", "",
            "## One step, pass by pass (the costliest config of each suite)", ""] + breakdowns
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", metavar="PATH", help="write the markdown here (default: print it)")
    args = p.parse_args(argv)
    text = render()
    if args.write:
        Path(args.write).write_text(text)
        print(f"wrote {args.write}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
