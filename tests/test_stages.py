"""Stages: products of earlier fits, built once per recipe, atomically, named by hash in every record."""
import pytest
import torch

from unisemi import stages as S
from unisemi.cli import main
from unisemi.config import load_config
from unisemi.train import fit


def test_a_stage_is_built_once_per_recipe_and_named_by_its_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("UNISEMI_CACHE", str(tmp_path))
    calls = []

    def build(folder):
        calls.append(folder)
        (folder / "x.txt").write_text("product")

    a = S.stage("demo", {"k": 1}, build)
    assert a == tmp_path / "stages" / f"demo-{S.stage_hash({'k': 1})}" and (a / "x.txt").read_text() == "product"
    assert S.stage("demo", {"k": 1}, build) == a and len(calls) == 1          # reused
    b = S.stage("demo", {"k": 2}, build)
    assert b != a and len(calls) == 2                                          # another recipe
    assert S.stage_hash({"a": 1, "b": [1, 2]}) == S.stage_hash({"b": [1, 2], "a": 1})
    assert [s["id"] for s in S.list_stages()] == sorted([a.name, b.name])
    assert S.read_recipe(a.name)["recipe"] == {"k": 1}


def test_a_failed_build_leaves_nothing_behind_and_force_replaces(tmp_path, monkeypatch):
    monkeypatch.setenv("UNISEMI_CACHE", str(tmp_path))

    def broken(folder):
        (folder / "half.txt").write_text("half")
        raise RuntimeError("build failed")

    with pytest.raises(RuntimeError, match="build failed"):
        S.stage("demo", {"k": 1}, broken)
    assert [p.name for p in (tmp_path / "stages").iterdir()] == [f".demo-{S.stage_hash({'k': 1})}.lock"]
    first = S.stage("demo", {"k": 1}, lambda f: (f / "v").write_text("1"))
    again = S.stage("demo", {"k": 1}, lambda f: (f / "v").write_text("2"), force=True)
    assert first == again and (again / "v").read_text() == "2"
    with pytest.raises(S.StageError, match="stage 'nope-0': not in .*cached: demo-"):
        S.read_recipe("nope-0")


def test_label_embeddings_stage_is_recorded_in_every_record_and_rebuilds_from_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("UNISEMI_CACHE", str(tmp_path))
    cfg = load_config("universal_city_town", [
        "data.size=[32, 64]", "data.n_labelled=8", "data.batch_size=2", "data.unlabelled_batch_size=2",
        "data.val_images=4", "model.width=8", "universal.embed_dim=4", "universal.init_iterations=3",
        "train.iterations=2", "train.eval_every=2", "train.threads=1", "train.progress=false"])
    result = fit(cfg)
    ids = sorted(p.name for p in (tmp_path / "stages").iterdir() if not p.name.startswith("."))
    assert len(ids) == 2 and all(i.startswith("label-embeddings-") for i in ids)     # city and town
    hashes = {i.split("-")[-1] for i in ids}
    assert set(result["stages"]) == {"label-embeddings/city", "label-embeddings/town"}
    assert set(result["stages"].values()) == hashes
    assert all(r["stages"] == result["stages"] for r in result["history"])
    assert main(["stages", "list"]) == 0 and ids[0] in capsys.readouterr().out
    # rebuilt from its recipe alone: same folder, the same centroids (the fit is deterministic)
    before = torch.load(tmp_path / "stages" / ids[0] / "centroids.pt")
    assert main(["stages", "rebuild", ids[0]]) == 0
    assert torch.equal(torch.load(tmp_path / "stages" / ids[0] / "centroids.pt"), before)
    assert main(["stages", "rebuild", "label-embeddings-0"]) == 2
    assert "not in" in capsys.readouterr().err


def test_loader_settings_are_outside_every_stage_recipe():
    """data.workers and data.prefetch change how fast a stage reads its images, never what it
    computes: a run with other loader settings reuses the stages."""
    from unisemi.config import to_dict
    from unisemi.methods.transfer import recipes
    from unisemi.methods.universal.embeddings import embedding_recipe
    base = ["method=transfer", "data.domains=[objects]", "transfer.phase=pnet"]
    a, b = (load_config(None, base + extra) for extra in ([], ["data.workers=3", "data.prefetch=4"]))
    for recipe_of in (recipes.lnet_recipe, recipes.cam_recipe, recipes.labels_recipe,
                      recipes.pnet_recipe, recipes.segmenter_recipe):
        assert recipe_of(a) == recipe_of(b), recipe_of.__name__
    u = [load_config("universal_city_town", extra)
         for extra in ([], ["data.workers=3"], ["train.checkpoint_every=5"])]
    assert embedding_recipe(to_dict(u[0]), u[0], "city") == embedding_recipe(to_dict(u[1]), u[1], "city")
    assert embedding_recipe(to_dict(u[0]), u[0], "city") == embedding_recipe(to_dict(u[2]), u[2], "city")
    assert embedding_recipe(to_dict(u[0]), u[0], "city") != embedding_recipe(
        to_dict(u[0]), load_config("universal_city_town", ["train.seed=1"]), "city")
