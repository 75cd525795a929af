"""The synthetic-shapes pretrained encoder: file format, cache key, errors, concurrency, fine-tuning."""
import dataclasses
import multiprocessing
import os
from types import SimpleNamespace

import pytest
import torch

from unisemi import pretrain as P
from unisemi.config import load_config
from unisemi.data.synthetic import shapes
from unisemi.models import ENCODERS, build_model, weights_hash
from unisemi.models.weights import load_encoder_weights

TINY = P.PretrainConfig(width=8, iterations=3, sizes=((32, 32), (32, 64)), batch_pixels=2 * 32 * 64,
                        warmup=1)
MODEL = SimpleNamespace(encoder="tiny", width=8, output_stride=8, head="fcn", pretrained="none")
FAST = ["data.size=[32, 64]", "data.n_labelled=8", "data.batch_size=2", "data.val_images=4",
        "model.width=8", "train.progress=false", "train.threads=1", "train.iterations=2",
        "train.eval_every=2"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UNISEMI_CACHE", str(tmp_path / "cache"))
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def encoder_state(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_generator_targets_are_consistent():
    x, y = shapes.draw_batch(4, 32, 64, torch.Generator().manual_seed(0))
    assert x.shape == (4, 3, 32, 64) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert int(y["shape"].max()) < len(shapes.SHAPES) and int(y["texture"].max()) < len(shapes.TEXTURES)
    assert 0 < float(y["edge"].mean()) < 0.5
    x2, _ = shapes.draw_batch(4, 32, 64, torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)     # a pure function of the generator state


def test_pretrained_file_loads_every_key_and_a_missing_key_is_reported(tmp_path):
    path, meta = P.pretrain(TINY, progress=False)
    from unisemi.stages import stage_hash
    assert path == P.cache_path(TINY) and path.name == "encoder.pt"
    assert path.parent == tmp_path / "cache" / "stages" / f"pretrained-{stage_hash(P.recipe(TINY))}"
    assert {"shape_miou", "texture_miou", "edge_f1"} <= set(meta["metrics"])
    encoder = ENCODERS["tiny"](8, 8)
    report = load_encoder_weights(encoder, path)
    assert report["missing"] == [] and report["unexpected"] == [] and report["mismatched"] == []
    assert set(report["loaded"]) == set(encoder.state_dict())
    for k, v in encoder.state_dict().items():
        assert torch.equal(v, encoder_state(path)[k])

    state = encoder_state(path)
    dropped = "stage2.body.0.weight"
    del state[dropped]
    torch.save({"state_dict": state}, tmp_path / "partial.pt")
    report = load_encoder_weights(ENCODERS["tiny"](8, 8), tmp_path / "partial.pt")
    assert report["missing"] == [dropped]


def test_cache_key_follows_world_version_and_config(monkeypatch):
    key = P.cache_key(TINY)
    assert key.startswith("tiny-w8-world")
    assert P.cache_key(dataclasses.replace(TINY, iterations=4)) != key
    assert P.cache_key(dataclasses.replace(TINY, lr=0.02)) != key
    assert P.cache_key(dataclasses.replace(TINY, width=16)).startswith("tiny-w16-")
    assert P.cache_key(dataclasses.replace(TINY, encoder="resnet18")).startswith("resnet18-world")
    monkeypatch.setattr("unisemi.data.synthetic.WORLD_VERSION", "99")
    assert P.cache_key(TINY) != key and "-world99-" in P.cache_key(TINY)


def test_corrupt_or_mismatched_cache_names_the_file_and_the_rebuild_command(monkeypatch, capsys):
    path = P.cache_path(TINY)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a torch file")
    with pytest.raises(P.PretrainedCacheError) as err:
        P.ensure_pretrained(MODEL, TINY)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    assert "python -m unisemi pretrain --encoder tiny --width 8 --iterations 3" in msg and "--force" in msg

    # A file with the right format but another encoder's weights: a mismatch, same kind of error.
    other = ENCODERS["tiny"](8, 16).state_dict()
    torch.save({"state_dict": other, "meta": {"key": P.cache_key(TINY)}}, path)
    with pytest.raises(P.PretrainedCacheError, match="does not match the tiny encoder"):
        P.ensure_pretrained(MODEL, TINY)

    # Through the model config (model.pretrained=synthetic) and through the CLI.
    monkeypatch.setattr(P, "DEFAULT", TINY)
    with pytest.raises(P.PretrainedCacheError, match=str(path)):
        build_model(SimpleNamespace(**{**vars(MODEL), "pretrained": "synthetic"}), {"city": 19})
    from unisemi.cli import main
    assert main(["pretrain", "--encoder", "tiny", "--width", "8", "--iterations", "3"]) == 2
    assert "rebuild with: python -m unisemi pretrain" in capsys.readouterr().err


def _ask_for_cache(cache):
    os.environ["UNISEMI_CACHE"] = cache
    torch.set_num_threads(1)
    path = P.ensure_pretrained(MODEL, TINY)
    return str(path), os.stat(path).st_ino, weights_hash(path)


def test_two_processes_asking_for_a_missing_cache_make_one_valid_file(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.map(_ask_for_cache, [str(tmp_path / "cache")] * 2)
    assert len(set(results)) == 1          # same path, same inode (written once), same bytes
    path = P.cache_path(TINY)
    assert results[0][0] == str(path)
    P.check_file(path, TINY)
    assert sorted(p.name for p in path.parent.iterdir()) == ["encoder.pt", "recipe.json"]
    # beside the stage: its lock only, no half-built folder left behind
    assert sorted(p.name for p in path.parent.parent.iterdir()) == [f".{path.parent.name}.lock", path.parent.name]


def test_fine_tuning_starts_from_the_pretrained_file(tmp_path, monkeypatch):
    path, _ = P.pretrain(TINY, out=tmp_path / "enc.pt", progress=False)
    saved = encoder_state(path)
    cfg = load_config("supervised_city", FAST + [f"model.pretrained={path}"])
    model = build_model(cfg.model, {"city": 19})     # as fit builds it, before its first step
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, saved[k]), k
    result = __import__("unisemi.train", fromlist=["fit"]).fit(cfg, stop_after=2)
    assert result["weights_hash"] == weights_hash(path) and len(result["weights_hash"]) == 16
    assert all(r["weights_hash"] == weights_hash(path) for r in result["history"])

    # `synthetic` resolves to the cache file of the config's encoder and width, built if missing.
    monkeypatch.setattr(P, "DEFAULT", TINY)
    cfg = load_config("supervised_city", FAST + ["model.pretrained=synthetic"])
    model = build_model(cfg.model, {"city": 19})
    cached = P.cache_path(P.config_for(cfg.model))
    assert cached.exists() and model.weights_hash == weights_hash(cached)
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, encoder_state(cached)[k]), k

    plain = load_config("supervised_city", FAST)
    assert build_model(plain.model, {"city": 19}).weights_hash is None


def test_weights_hash_is_a_store_column():
    from unisemi.ablation.store import COLUMNS
    from unisemi.ablation.trial import rows_for
    assert "weights_hash" in COLUMNS and "stages_json" in COLUMNS
    record = {"iteration": 2, "weights_hash": "ab" * 8, "timing": {},
              "stages": {"pretrained": "cd" * 8},
              "splits": {"city": {"split_id": "s", "split_hash": "h", "n_labelled": 8}},
              "domains": {"city": {"miou": 1.0, "pixel_acc": 2.0, "iou": {"road": 1.0}}}}
    trial = {"key": "k", "cell_id": "c", "cell": {}, "seed": 0, "split_seed": 0,
             "config_hash": "x", "config": {}, "domain_map": {"city": "cs"}}
    meta = {"run_id": "r", "suite": "s", "table": "t", "profile": "laptop", "workers": 0,
            "git_rev": "g"}
    row = rows_for(record, trial, meta, "cpu")[0]
    assert row["weights_hash"] == "ab" * 8 and row["stages_json"] == '{"pretrained": "' + "cd" * 8 + "\"}"
