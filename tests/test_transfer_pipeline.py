"""The transfer pipeline end to end on tiny fits: no weak-image ground truth reaches any loss, and
the stages are built once per recipe, shared, named in every record and rebuilt from the CLI."""
import numpy as np
import pytest
import torch

from unisemi.cli import main
from unisemi.config import load_config
from unisemi.data import domain_data, synthetic
from unisemi.methods.transfer import config as tc, labels, lnet
from unisemi.train import fit

TINY = ["method=transfer", "data.domains=[objects]", "data.size=[32, 32]", "data.n_labelled=32",
        "data.batch_size=4", "data.val_images=8", "model.width=8", "train.threads=1",
        "train.progress=false", "train.iterations=3", "train.eval_every=3",
        "transfer.lnet_iterations=3", "transfer.cam_iterations=3", "transfer.diffusion_workers=0",
        "transfer.diffusion_segments=30", "transfer.segmenter_iterations=2",
        "transfer.pnet_pretrain_iterations=2"]


def _products(cache):
    """Every stage's tensors, by stage name (hash aside: poisoning must not change recipes either)."""
    out = {}
    for d in sorted((cache / "stages").iterdir()):
        if d.name.startswith("."):
            continue
        for f in d.glob("*.pt"):
            out[d.name] = torch.load(f)
    return out


CLOCKS = ("wall_s", "seconds_per_image", "timing", "started_at")     # times differ run to run


def _same(a, b):
    """Equal products: tensors exactly, numbers with NaN equal to NaN, clocks aside."""
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a if k not in CLOCKS)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (np.isnan(a) and np.isnan(b))
    return a == b


def _run_both_rows(tmp_path, monkeypatch, poison: bool):
    cache = tmp_path / ("poisoned" if poison else "clean")
    monkeypatch.setenv("UNISEMI_CACHE", str(cache))
    monkeypatch.setattr(domain_data, "_RENDERED", {})          # no images shared between the runs
    if poison:
        true_render = synthetic.render
        classes = synthetic.get_domain("objects").classes
        weak = torch.tensor([classes.index(c) for c in tc.VOC_OBJECTS if c not in tc.SPLIT1_STRONG])

        def poisoned(domain, split, indices, seed=0, size=None):
            images, lab = true_render(domain, split, indices, seed, size)
            if domain == "objects" and split == "train":
                hit = torch.isin(lab.long(), weak).flatten(1).any(1)      # the weak images
                # every pixel label of a weak-category image is replaced by noise
                noise = torch.randint(0, 21, lab.shape, generator=torch.Generator().manual_seed(7)).to(lab.dtype)
                lab = torch.where(hit[:, None, None], noise, lab)
            return images, lab

        def true_image_labels(domain, split, indices, seed=0):   # image-level labels stay true
            _, lab = true_render(domain, split, indices, seed)
            onehot = torch.zeros(lab.shape[0], 256, dtype=torch.bool)
            onehot.scatter_(1, lab.reshape(lab.shape[0], -1).long(), True)
            return onehot[:, :synthetic.get_domain(domain).num_classes]

        monkeypatch.setattr(synthetic, "render", poisoned)
        monkeypatch.setattr(synthetic, "image_labels", true_image_labels)
    rows = {}
    for phase in ("lnet", "pnet"):
        r = fit(load_config(None, TINY + [f"transfer.phase={phase}"]))
        rows[phase] = (r["final"]["loss"], r["final"]["domains"]["objects"]["iou"],
                       {k: v.clone() for k, v in r["model"].state_dict().items()})
    if poison:      # the poison really reached the labels the loop fetched
        from unisemi.methods.transfer.setting import partition
        cfg = load_config(None, TINY)
        weak_idx = partition(cfg).weak
        fetched = domain_data.load_domain(cfg.data, "objects").fetch("train", weak_idx)[1]
        assert len(weak_idx) and not torch.equal(fetched, true_render("objects", "train", weak_idx, 0, (32, 32))[1])
    return rows, _products(cache)


def test_no_weak_image_ground_truth_reaches_any_loss(tmp_path, monkeypatch):
    clean, clean_stages = _run_both_rows(tmp_path, monkeypatch, poison=False)
    dirty, dirty_stages = _run_both_rows(tmp_path, monkeypatch, poison=True)
    # every stage product, every loss term, every weight and every IoU is identical
    assert list(clean_stages) == list(dirty_stages) and len(clean_stages) == 5
    for name in clean_stages:
        assert _same(clean_stages[name], dirty_stages[name]), name
    for phase in ("lnet", "pnet"):
        (loss_a, iou_a, w_a), (loss_b, iou_b, w_b) = clean[phase], dirty[phase]
        assert loss_a == loss_b and _same(iou_a, iou_b)
        assert all(torch.equal(w_a[k], w_b[k]) for k in w_a)


def test_stages_are_shared_named_and_rebuilt_when_their_inputs_change(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("UNISEMI_CACHE", str(tmp_path))
    calls = []
    real_train = lnet.train
    monkeypatch.setattr(lnet, "train", lambda cfg: (calls.append(cfg.transfer.lnet_lr), real_train(cfg))[1])
    first = fit(load_config(None, TINY))
    assert set(first["stages"]) == {"transfer-lnet", "transfer-cam", "transfer-labels"}
    assert all(r["stages"] == first["stages"] for r in first["history"])
    second = fit(load_config(None, TINY + ["optim.lr=0.02"]))   # another trial, the same stages
    assert second["stages"] == first["stages"] and calls == [0.01]             # cache hit
    ids = lambda: sorted(p.name for p in (tmp_path / "stages").iterdir() if not p.name.startswith("."))  # noqa: E731
    assert len(ids()) == 3
    # the diffusion's threshold is an input of the labels stage only
    third = fit(load_config(None, TINY + ["transfer.cam_threshold=0.5"]))
    assert third["stages"]["transfer-labels"] != first["stages"]["transfer-labels"]
    assert third["stages"]["transfer-lnet"] == first["stages"]["transfer-lnet"] and len(calls) == 1
    # the L-Net's rate changes the L-Net and, through its recipe, the labels built on it
    fourth = fit(load_config(None, TINY + ["transfer.lnet_lr=0.02"]))
    assert calls == [0.01, 0.02] and fourth["stages"]["transfer-cam"] == first["stages"]["transfer-cam"]
    assert fourth["stages"]["transfer-labels"] not in (first["stages"]["transfer-labels"],
                                                       third["stages"]["transfer-labels"])
    # rebuilt from the CLI from its recipe alone: the same maps (every fit is seeded)
    lab_id = f"transfer-labels-{first['stages']['transfer-labels']}"
    before = labels.load(tmp_path / "stages" / lab_id)
    assert main(["stages", "rebuild", lab_id]) == 0 and lab_id in capsys.readouterr().out
    after = labels.load(tmp_path / "stages" / lab_id)
    assert torch.equal(before["labels"], after["labels"]) and torch.equal(before["indices"], after["indices"])
    assert len(calls) == 2                                     # its L-Net input was reused, not refit
    lnet_id = f"transfer-lnet-{first['stages']['transfer-lnet']}"
    w0 = torch.load(tmp_path / "stages" / lnet_id / lnet.WEIGHTS_FILE)["state_dict"]
    assert main(["stages", "rebuild", lnet_id]) == 0 and len(calls) == 3
    w1 = torch.load(tmp_path / "stages" / lnet_id / lnet.WEIGHTS_FILE)["state_dict"]
    assert all(torch.equal(w0[k], w1[k]) for k in w0)


def test_diffusion_workers_give_the_in_process_result():
    from unisemi.diffusion import DiffusionParams, diffuse_images
    rng = np.random.default_rng(0)
    jobs = []
    for k in range(4):
        image = np.zeros((32, 32, 3), dtype=np.uint8)
        image[:, 16:] = 200
        image = np.clip(image + rng.integers(0, 20, image.shape), 0, 255).astype(np.uint8)
        mask = np.zeros((32, 32))
        mask[:, 16:] = 0.9
        seed = np.zeros((32, 32), dtype=bool)
        seed[10:20, 20:28] = True
        jobs.append((image, mask, {3 + k: seed}))
    p = DiffusionParams(n_segments=30)
    inline, _ = diffuse_images(jobs, p, workers=0)
    pooled, seconds = diffuse_images(jobs, p, workers=2)
    assert all(np.array_equal(a, b) for a, b in zip(inline, pooled)) and len(seconds) == 4
    assert (inline[0][:, 24:] == 3).all() and (inline[0][:, :8] == 0).all()   # object and background
