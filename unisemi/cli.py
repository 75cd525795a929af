"""`python -m unisemi {train,eval,tune,pretrain,viz,weights,...}`: the single-process entry points."""
from __future__ import annotations

import argparse
import logging
import math
import sys

from unisemi.ablation.preflight import RayUnreachable

USER_ERRORS = (ValueError, FileNotFoundError, KeyError)


def format_record(record: dict, title: str) -> str:
    """Per-class IoU and mIoU of one evaluation, one block per domain."""
    lines = [f"{title} (iteration {record['iteration']})"]
    for domain, m in record["domains"].items():
        lines.append(f"  {domain}: mIoU {m['miou']:.2f}  pixel acc {m['pixel_acc']:.2f}")
        width = max(len(c) for c in m["iou"])
        for name, v in m["iou"].items():
            shown = "   n/a" if math.isnan(v) else f"{v:6.2f}"
            lines.append(f"    {name:<{width}}  {shown}")
    if len(record["domains"]) > 1:
        lines.append(f"  sum of mIoU {record['miou_sum']:.2f}")
    return "\n".join(lines)


def cmd_train(args) -> int:
    from unisemi.config import load_config
    cfg = load_config(args.config, args.set)
    from unisemi.train import fit
    result = fit(cfg, resume=args.resume)
    print(format_record(result["final"], "final evaluation"))
    if result["best"] is not result["final"]:
        print(format_record(result["best"], "best-on-validation evaluation"))
    t = result["timing"]
    print(f"wall {t['total']:.1f}s (data {t['data']:.1f}s, train {t['train']:.1f}s, eval {t['eval']:.1f}s)")
    return 0


def cmd_eval(args) -> int:
    import torch

    from unisemi import checkpoint
    from unisemi.config import build_config, load_values, _merge, parse_override
    from unisemi.data import load_domain
    from unisemi.methods import head_sizes
    from unisemi.models import build_model
    from unisemi.train import evaluate_all, resolve_device

    ck = checkpoint.load(args.checkpoint)
    values = _merge(ck["config"], load_values(args.config))
    for text in args.set:
        values = _merge(values, parse_override(text))
    cfg = build_config(values, str(args.checkpoint))
    device = resolve_device(cfg.train.device)
    domains = {d: load_domain(cfg.data, d) for d in cfg.data.domains}
    model = build_model(cfg.model, head_sizes(cfg, domains)).to(device)
    model.load_state_dict(ck["model"])
    with torch.no_grad():
        record = evaluate_all(cfg, model, domains, device, ck["step"])
    print(format_record(record, f"evaluation of {args.checkpoint}"))
    return 0


def cmd_tune(args) -> int:
    from unisemi.ablation.search import main as tune_main
    return tune_main(args)


def cmd_pretrain(args) -> int:
    from unisemi.pretrain import main as pretrain_main
    return pretrain_main(args)


def cmd_report(args) -> int:
    from unisemi.ablation.site import build_site, report_root
    from unisemi.ablation.store import StoreError, check_results_dir
    try:
        check_results_dir(args.results)
    except StoreError as exc:          # a file, an earlier layout, no write permission: one line
        raise ValueError(str(exc)) from None
    written = build_site(args.results, log=lambda msg: print(msg, file=sys.stderr))
    print(f"wrote {len(written) - 1} table page(s) and {report_root(args.results) / 'index.html'}")
    return 0


def cmd_claims(args) -> int:
    from unisemi.ablation.claims import csv_text
    from unisemi.ablation.site import all_claims, claims_text, report_root
    from unisemi.atomic import atomic_write_text
    rows = all_claims(args.results, log=lambda msg: print(msg, file=sys.stderr))
    print(claims_text(rows))
    if rows:
        path = atomic_write_text(report_root(args.results) / "claims.csv", csv_text(rows))
        print(f"{len(rows)} claim(s); wrote {path}")
    return 0


def stage_builders() -> dict:
    """{stage name: rebuild(recipe, fit, configure) -> folder}: how each kind of stage is made again
    (`configure(values, where)` builds a Config, for builders that need one before fitting)."""
    from unisemi import pretrain
    from unisemi.methods.transfer.recipes import BUILDERS as transfer_builders
    from unisemi.methods.universal import embeddings
    return {pretrain.STAGE: pretrain.rebuild_stage, embeddings.STAGE: embeddings.rebuild_stage,
            **transfer_builders}


def cmd_stages(args) -> int:
    from unisemi.stages import StageError, cache_dir, list_stages, read_recipe
    if args.action == "list":
        rows = list_stages()
        print(f"{len(rows)} stage(s) in {cache_dir() / 'stages'}")
        for r in rows:
            print(f"{r['id']:40s} {r['bytes'] / 1e6:8.2f} MB  built {r['time_utc']} in {r['built_s']:.0f} s")
        return 0
    if not args.stage:
        raise StageError("stages rebuild: name the stage, e.g. pretrained-<hash> (see: stages list)")
    meta = read_recipe(args.stage)
    builders = stage_builders()
    if meta["name"] not in builders:
        raise StageError(f"stage '{args.stage}': no builder for stages named '{meta['name']}' "
                         f"(known: {', '.join(sorted(builders))})")
    from unisemi.config import build_config
    from unisemi.train import fit
    folder = builders[meta["name"]](meta["recipe"], lambda values: fit(build_config(values, args.stage)),
                                    configure=build_config)
    print(f"rebuilt {folder}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m unisemi", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train one config and print per-class IoU / mIoU")
    train.add_argument("--config", default=None, help="YAML file or preset name (unisemi/presets)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override one dotted key, e.g. train.iterations=300 (repeatable)")
    train.add_argument("--resume", default=None, help="checkpoint file or directory to resume from")
    train.set_defaults(func=cmd_train)
    ev = sub.add_parser("eval", help="evaluate a checkpoint on the validation split")
    ev.add_argument("--checkpoint", required=True, help="checkpoint file or directory")
    ev.add_argument("--config", default=None, help="optional YAML whose values override the stored config")
    ev.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ev.set_defaults(func=cmd_eval)
    sub.add_parser("submit", help="ray job submit that records the checkout's git revision "
                   "(python -m unisemi submit -h)")
    tune = sub.add_parser("tune", help="search a method's hyperparameters (Ray Tune + Optuna TPE + ASHA)")
    tune.add_argument("space", help="search space YAML (search_spaces/<name>.yaml) or its name")
    tune.add_argument("--samples", type=int, default=None, help="trials (default: the file's samples)")
    tune.add_argument("--results", default="results", help="results directory (default: ./results)")
    tune.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config key in every trial, e.g. train.iterations=300")
    tune.add_argument("--max-concurrent", type=int, default=None, help="trials at once (default: as fit)")
    tune.add_argument("--workers-per-trial", type=int, default=0,
                      help="0 = fit inside the trial; N >= 1 = a TorchTrainer with N DDP workers")
    tune.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial (or per worker)")
    tune.add_argument("--gpus-per-trial", type=float, default=0.0,
                      help="GPUs per trial (or per worker); fractions share a GPU")
    tune.add_argument("--address", default=None, help="join a running Ray cluster ('auto')")
    tune.add_argument("--storage", default=None, metavar="URI",
                      help="Ray's experiment state and checkpoints: s3://..., gs://... or a folder mounted on "
                           "every node (default: $UNISEMI_STORAGE, else RESULTS/ray)")
    tune.add_argument("--dry-run", action="store_true", help="print the first sampled configurations and exit")
    from unisemi.ablation.trackers import add_tracker_option
    add_tracker_option(tune)
    tune.set_defaults(func=cmd_tune)
    pre = sub.add_parser("pretrain", help="pretrain an encoder on the synthetic shapes task "
                         "(model.pretrained=synthetic); cached under $UNISEMI_CACHE/pretrained")
    pre.add_argument("--encoder", default="tiny", help="encoder name (tiny, resnet18, ...)")
    pre.add_argument("--width", type=int, default=32, help="tiny encoder width (default 32)")
    pre.add_argument("--output-stride", type=int, default=8, choices=(8, 16))
    pre.add_argument("--iterations", type=int, default=None, help="steps (default: the recipe's)")
    pre.add_argument("--seed", type=int, default=0)
    pre.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    pre.add_argument("--out", default=None, help="write here instead of the cache")
    pre.add_argument("--force", action="store_true", help="rebuild even if the file exists")
    pre.set_defaults(func=cmd_pretrain)
    st = sub.add_parser("stages", help="list or rebuild the cached products of earlier fits "
                        "($UNISEMI_CACHE/stages)")
    st.add_argument("action", choices=("list", "rebuild"))
    st.add_argument("stage", nargs="?", help="for rebuild: <name>-<hash>, as listed")
    st.set_defaults(func=cmd_stages)
    rep = sub.add_parser("report", help="rebuild the HTML report of every stored table "
                         "(results/report/index.html and one page per table)")
    rep.add_argument("--results", default="results", help="results directory (default: ./results)")
    rep.set_defaults(func=cmd_report)
    cl = sub.add_parser("claims", help="the verdict on every paper claim of every stored table "
                        "(paired 95%% intervals; also written to results/report/claims.csv)")
    cl.add_argument("--results", default="results", help="results directory (default: ./results)")
    cl.set_defaults(func=cmd_claims)
    from unisemi.viz import add_parser as add_viz
    add_viz(sub)
    from unisemi.data.check import add_parser as add_data
    add_data(sub)
    from unisemi.models.check import add_parser as add_weights
    add_weights(sub)
    return parser


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["submit"]:     # its options pass through to `ray job submit`: no argparse here
        from unisemi.ablation.submit import main as submit_main
        return submit_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except RayUnreachable as exc:        # the cluster's address or token, one line
        print(f"error: {exc}", file=sys.stderr)
        return 4
