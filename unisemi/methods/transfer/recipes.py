"""The transfer pipeline's stages: what determines each (its recipe), and how each is (re)built.

    transfer-lnet      L-Net weights                  <- data, model, optim, seed, split
    transfer-cam       CAM classifier weights         <- data, model, optim, seed (no split: image labels)
    transfer-labels    L_w of every weak image        <- the two above, split, CAM threshold, diffusion
    transfer-segmenter the "L-Net" row's segmenter    <- the lnet phase's config at segmenter_iterations
    transfer-pnet      pre-trained P-Net              <- transfer-lnet, P-Net settings

A recipe's `config` is a config dict that builds as is (`build_config`), holding only the keys
its stage reads, so the L-Net and P-Net rows of one split and seed share the first three stages,
and `python -m unisemi stages rebuild <id>` needs nothing but the recipe. A recipe names the
recipes of the stages it reads, so a changed input gives a new hash down the line.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from unisemi.added_fields import drop_added_fields
from unisemi.device import cpu_state_dict
from unisemi.methods.transfer import cam, labels, lnet, pnet

SEGMENTER = "transfer-segmenter"
SEGMENTER_FILE = "segmenter.pt"
VERSION = "v1"

LNET_KEYS = ("split", "strong_domain", "lnet_iterations", "lnet_lr", "lnet_batch_size")
CAM_KEYS = ("cam_iterations", "cam_lr")
LABEL_KEYS = LNET_KEYS + CAM_KEYS + ("cam_threshold", "diffusion_segments", "diffusion_compactness",
                                     "diffusion_sigma", "diffusion_seed_fraction",
                                     "diffusion_background_mask", "diffusion_background_q")
PNET_KEYS = LNET_KEYS + ("pnet_pretrain_iterations", "pnet_lr", "pnet_size")
# no stage reads the first two; the loader settings change how fast a stage reads, not what
DATA_ASIDE = ("val_images", "unlabelled_batch_size", "workers", "prefetch", "cache_resized")
OPTIM_ASIDE = ("lr", "head_lr_mult")    # the segmenter's: the own-loop stages have their own rates


def stage_values(cfg, keys, whole_optim: bool = False) -> dict:
    """The config dict of a stage: data, model, optim, the train seed and the `transfer` keys."""
    from unisemi.data import synthetic
    d = json.loads(json.dumps(dataclasses.asdict(cfg)))     # as config.to_dict (no import back)
    optim = d["optim"] if whole_optim else {k: v for k, v in d["optim"].items() if k not in OPTIM_ASIDE}
    values = {"method": "transfer", "world": synthetic.WORLD_VERSION,
              "data": {k: v for k, v in d["data"].items() if k not in DATA_ASIDE},
              "model": d["model"], "optim": optim, "train": {"seed": cfg.train.seed},
              "transfer": {k: d["transfer"][k] for k in keys}}
    return drop_added_fields(values)    # stored stages keep their hashes (added_fields.py)


def lnet_recipe(cfg) -> dict:
    return {"what": f"{lnet.STAGE}-{VERSION}", "config": stage_values(cfg, LNET_KEYS)}


def cam_recipe(cfg) -> dict:
    return {"what": f"{cam.STAGE}-{VERSION}", "config": stage_values(cfg, CAM_KEYS)}


def labels_recipe(cfg) -> dict:
    return {"what": f"{labels.STAGE}-{VERSION}", "config": stage_values(cfg, LABEL_KEYS),
            "lnet": lnet_recipe(cfg), "cam": cam_recipe(cfg)}


def pnet_recipe(cfg) -> dict:
    return {"what": f"{pnet.STAGE}-{VERSION}", "config": stage_values(cfg, PNET_KEYS),
            "lnet": lnet_recipe(cfg)}


def segmenter_recipe(cfg) -> dict:
    """The lnet phase of this trial's config, trained for `segmenter_iterations`."""
    n = cfg.transfer.segmenter_iterations
    values = stage_values(cfg, LABEL_KEYS + ("segmenter_iterations",), whole_optim=True)
    values.pop("world")
    values["transfer"]["phase"] = "lnet"
    values["train"].update(iterations=n, eval_every=n)
    values["data"]["val_images"] = 1            # its own evaluation is not a result
    return {"what": f"{SEGMENTER}-{VERSION}", "config": values, "labels": labels_recipe(cfg)}


def _config(values: dict, configure):
    return configure({k: v for k, v in values.items() if k != "world"}, "transfer stage recipe")


# ---------------------------------------------------------------------------------------------
# getting (building if missing) each stage; `get(name, recipe, build)` is Stages.get or stage()

def lnet_stage(cfg, get) -> Path:
    return get(lnet.STAGE, lnet_recipe(cfg), lambda f: lnet.build(cfg, f))


def cam_stage(cfg, get) -> Path:
    return get(cam.STAGE, cam_recipe(cfg), lambda f: cam.build(cfg, f))


def labels_stage(cfg, get) -> Path:
    lp, cp = lnet_stage(cfg, get), cam_stage(cfg, get)
    return get(labels.STAGE, labels_recipe(cfg), lambda f: labels.build(cfg, f, lp, cp))


def pnet_stage(cfg, get) -> Path:
    lp = lnet_stage(cfg, get)
    return get(pnet.STAGE, pnet_recipe(cfg), lambda f: pnet.build(cfg, f, lp))


def segmenter_stage(cfg, get, fit, threads: int = 0) -> Path:
    recipe = segmenter_recipe(cfg)

    def build(folder: Path) -> None:
        import torch
        # threads, device and the loader are how the fit runs, not what it computes: the trial's,
        # outside the recipe
        values = {**recipe["config"], "train": {**recipe["config"]["train"], "threads": threads,
                                                "device": cfg.train.device, "progress": False},
                  "data": {**recipe["config"]["data"], "workers": cfg.data.workers,
                           "prefetch": cfg.data.prefetch, "cache_resized": cfg.data.cache_resized}}
        result = fit(values)
        torch.save({"state_dict": cpu_state_dict(result["model"]), "final": result["final"]},
                   folder / SEGMENTER_FILE)

    return get(SEGMENTER, recipe, build)


# ---------------------------------------------------------------------------------------------
# `python -m unisemi stages rebuild <name>-<hash>`

def _rebuilder(name: str, recipe_of, getter):
    def rebuild(recipe: dict, fit, configure) -> Path:
        from unisemi.stages import StageError, stage
        cfg = _config(recipe["config"], configure)
        if recipe_of(cfg) != recipe:
            raise StageError(f"stage {name}: its stored recipe does not match what this version of "
                             f"the code derives from it (an older stage); build it afresh from a run")

        def forced(n, r, build):           # the named stage is rebuilt, its inputs reused
            return stage(n, r, build, force=(n == name))

        return getter(cfg, forced, fit)
    return rebuild


BUILDERS = {
    lnet.STAGE: _rebuilder(lnet.STAGE, lnet_recipe, lambda c, g, f: lnet_stage(c, g)),
    cam.STAGE: _rebuilder(cam.STAGE, cam_recipe, lambda c, g, f: cam_stage(c, g)),
    labels.STAGE: _rebuilder(labels.STAGE, labels_recipe, lambda c, g, f: labels_stage(c, g)),
    pnet.STAGE: _rebuilder(pnet.STAGE, pnet_recipe, lambda c, g, f: pnet_stage(c, g)),
    SEGMENTER: _rebuilder(SEGMENTER, segmenter_recipe, lambda c, g, f: segmenter_stage(c, g, f)),
}
