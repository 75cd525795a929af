"""The CUDA path of the loop: run by benchmarks/gpu_check.sh on a GPU machine, skipped elsewhere."""
import math

import pytest
import torch

from unisemi.config import load_config
from unisemi.train import fit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

TINY = ["data.size=[64, 128]", "data.n_labelled=8", "data.batch_size=4", "data.unlabelled_batch_size=4",
        "data.val_images=8", "model.width=16", "train.iterations=20", "train.eval_every=10",
        "train.progress=false"]


def test_supervised_on_cuda_tracks_the_cpu_run():
    cpu = fit(load_config("supervised_city", TINY))
    gpu = fit(load_config("supervised_city", TINY + ["train.device=cuda"]))
    # same seeds and batches; cuDNN kernels differ in rounding, so the losses agree closely, not exactly
    for a, b in zip(cpu["history"], gpu["history"]):
        assert b["loss"]["sup/city"] == pytest.approx(a["loss"]["sup/city"], rel=0.02)
    assert next(gpu["model"].parameters()).device.type == "cuda"


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains_with_finite_losses(amp):
    out = fit(load_config("supervised_city", TINY + ["train.device=cuda", f"train.amp={amp}"]))
    first, last = out["history"][0]["loss"]["sup/city"], out["history"][-1]["loss"]["sup/city"]
    assert math.isfinite(last) and last < first


def test_contrastive_step_on_cuda_fills_the_bank_and_the_teacher_follows():
    out = fit(load_config("contrastive_city", TINY + [
        "train.device=cuda", "train.amp=bf16", "contrastive.warmup=5", "contrastive.feature_filter=false",
        "contrastive.memory_size=16"]))
    state = out["state"]
    assert state.memory.device.type == "cuda" and int(state.fill.sum()) > 0
    assert all(math.isfinite(v) for v in out["final"]["loss"].values()) and "contr" in out["final"]["loss"]


def test_transfer_stages_and_rows_run_on_cuda_and_store_cpu_weights(tmp_path, monkeypatch):
    """Every stage of the pnet row (L-Net, CAM, diffusion inference, segmenter, P-Net pre-training)
    on the trial's device; the stage files hold CPU tensors, so a CPU machine reads them."""
    monkeypatch.setenv("UNISEMI_CACHE", str(tmp_path))
    out = fit(load_config(None, [
        "method=transfer", "data.domains=[objects]", "data.size=[32, 32]", "data.n_labelled=32",
        "data.batch_size=4", "data.val_images=8", "model.width=8", "train.progress=false",
        "train.iterations=3", "train.eval_every=3", "train.device=cuda", "transfer.phase=pnet",
        "transfer.lnet_iterations=3", "transfer.cam_iterations=3", "transfer.diffusion_workers=0",
        "transfer.diffusion_segments=30", "transfer.segmenter_iterations=2",
        "transfer.pnet_pretrain_iterations=2"]))
    assert next(out["model"].parameters()).device.type == "cuda"
    assert all(math.isfinite(v) for v in out["final"]["loss"].values())
    files = list(tmp_path.rglob("*.pt"))
    assert files
    for path in files:
        saved = torch.load(path)                       # no map_location: as the file was written
        tensors = list((saved.get("state_dict") or {}).values()) if isinstance(saved, dict) else []
        assert all(t.device.type == "cpu" for t in tensors), path


def test_a_real_stream_pins_its_batches_and_a_fit_on_a_real_tree_runs_on_cuda(tmp_path, monkeypatch):
    """Pinned memory on a GPU: the stream's batches arrive pinned (its thread hands them over as
    they are), through worker processes and the resized cache, and a short fit trains on cuda."""
    import fixtures_real as fx
    from unisemi.data import load_domain
    fx.cityscapes_tree(tmp_path / "cityscapes")
    monkeypatch.setenv("UNISEMI_DATA", str(tmp_path))
    monkeypatch.setenv("UNISEMI_CACHE", str(tmp_path / "cache"))
    real = ["data.domains=[cityscapes]", "data.n_labelled=2", "data.check_counts=false", "data.workers=1",
            "data.resize=[8,16]", "data.crop=[8,8]", "data.val_resize=[8,16]", "data.batch_size=2",
            "model.width=8", "train.progress=false", "train.device=cuda"]
    dd = load_domain(load_config(None, real).data, "cityscapes")
    for _ in range(2):                                  # the first fills the cache, the second reads it
        x, y = dd.stream("labelled", 2, seed=0, part=(0, 1), pin_memory=True).next()
        assert x.is_pinned() and y.is_pinned() and x.dtype == torch.uint8
    assert list((tmp_path / "cache" / "resized").rglob("*.png"))
    out = fit(load_config(None, [*real, "train.iterations=4", "train.eval_every=4"]))
    assert next(out["model"].parameters()).device.type == "cuda"
    assert all(math.isfinite(v) for v in out["final"]["loss"].values())
