"""`python ablations/run.py table6 --profile paper` end to end on a Cityscapes fixture tree that
UNISEMI_DATA points at: the spec's paper profile resolves to the real dataset with no other change."""
from __future__ import annotations

import json

import pandas as pd
import pytest

import fixtures_real as fx
from unisemi.ablation import cli
from unisemi.data.splits import file_split, split_hash

# The paper profile's own settings, shrunk to a few seconds: a tiny encoder without the profile's
# pretrained weights (a published file for another encoder), 2 iterations, 32x64.
SMALL = ["model.encoder=tiny", "model.pretrained=none", "model.width=8", "model.head=fcn", "train.iterations=2",
         "train.eval_every=2", "contrastive.warmup=1", "contrastive.proj_dim=16",
         "contrastive.attention_hidden=16", "data.batch_size=2", "data.unlabelled_batch_size=1",
         "data.resize=[32,64]", "data.crop=[32,32]", "data.val_resize=[32,64]",
         "data.workers=1", "data.check_counts=false"]


@pytest.mark.slow
def test_table6_paper_profile_runs_on_a_fixture_tree(tmp_path, monkeypatch):
    tree = fx.cityscapes_tree(tmp_path / "data" / "cityscapes")
    monkeypatch.setenv("UNISEMI_DATA", str(tmp_path / "data"))
    args = ["table6", "--profile", "paper", "--seeds", "1", "--only", "lambda_contr=1e-1",
            "--results", str(tmp_path / "results")]
    for item in SMALL:
        args += ["--set", item]
    assert cli.main(args) == 0
    rows = pd.read_parquet(tmp_path / "results" / "rows")
    final = rows[rows.is_final]
    assert len(final) == 1 and final.status.iloc[0] == "ok"
    row = final.iloc[0]
    assert row.profile == "paper" and row.domain == "cityscapes" and row.domain_key == "cs"
    config = json.loads(row.config_json)
    assert config["data"]["domains"] == ["cityscapes"] and config["method"] == "contrastive"
    # the profile's 1/30 of the 3 train images is ceil(3/30) = 1: the seeded draw from the tree's
    # sorted images, named by its hash
    assert row.split_id == "cityscapes/n1/s0"
    keys = sorted(f"leftImg8bit/train/{k.split('/', 1)[1]}_leftImg8bit.png"
                  for k in tree["raw"] if k.startswith("train/"))
    assert row.split_hash == split_hash(file_split(keys, 1, 0)[0])
    table = (tmp_path / "results" / "tables" / "contrastive" / "table6" / "table.md").read_text()
    assert "Profile: paper" in table and f"{row.miou:.1f}" in table


ASS_SMALL = ["model.encoder=tiny", "model.pretrained=none", "model.width=8", "model.head=fcn", "train.iterations=2",
             "train.eval_every=2", "data.n_labelled=1", "data.batch_size=1",
             "data.unlabelled_batch_size=1", "data.resize=[32,64]", "data.crop=[32,32]",
             "data.val_resize=[32,64]", "data.workers=1", "data.check_counts=false", "ass.gd_width=4",
             "ass.hidden=16"]


@pytest.mark.slow
def test_ass_table1_paper_profile_adapts_real_gta5_to_real_cityscapes(tmp_path, monkeypatch):
    """The profile's `sources: {game: gta5}` swaps the stand-in source for the real one in the
    adapting columns and leaves the Oracle without a source."""
    fx.cityscapes_tree(tmp_path / "data" / "cityscapes")
    fx.gta5_tree(tmp_path / "data" / "gta5")
    monkeypatch.setenv("UNISEMI_DATA", str(tmp_path / "data"))
    args = ["ass/table1", "--profile", "paper", "--seeds", "1", "--only", "city=c100",
            "--only", "method=oracle", "--only", "method=ga_csa", "--results", str(tmp_path / "results")]
    for item in ASS_SMALL:
        args += ["--set", item]
    assert cli.main(args) == 0
    final = pd.read_parquet(tmp_path / "results" / "rows").query("is_final")
    assert sorted(final.cell) == ["city=c100,method=ga_csa", "city=c100,method=oracle"]
    assert (final.status == "ok").all() and (final.domain == "cityscapes").all()
    source = {r.cell: json.loads(r.config_json)["ass"]["source_domain"] for r in final.itertuples()}
    assert source == {"city=c100,method=ga_csa": "gta5", "city=c100,method=oracle": ""}
    assert set(final.split_id) == {"cityscapes/n1/s0"}


@pytest.mark.slow
def test_universal_paper_profile_trains_cityscapes_crops_with_whole_camvid_images(tmp_path, monkeypatch):
    """Each dataset keeps its own protocol (Cityscapes 512x512 crops, CamVid whole), so one step
    holds images of different sizes: one encoder pass per size (models.encode_parts)."""
    fx.cityscapes_tree(tmp_path / "data" / "cityscapes")
    fx.camvid_tree(tmp_path / "data" / "camvid")
    monkeypatch.setenv("UNISEMI_DATA", str(tmp_path / "data"))
    args = ["universal/table1", "--profile", "paper", "--seeds", "1", "--only", "method=univ_full",
            "--results", str(tmp_path / "results")]
    for item in ["model.encoder=tiny", "model.pretrained=none", "model.width=8", "train.iterations=2", "train.eval_every=2",
                 "universal.init_iterations=2", "data.n_labelled=1", "data.batch_size=1",
                 "data.unlabelled_batch_size=1", "data.workers=1", "data.check_counts=false"]:
        args += ["--set", item]
    assert cli.main(args) == 0
    final = pd.read_parquet(tmp_path / "results" / "rows").query("is_final")
    assert sorted(final.domain) == ["camvid", "cityscapes"] and (final.status == "ok").all()
    config = json.loads(final.config_json.iloc[0])
    assert config["train"]["iterations"] == 2 and config["optim"]["weight_decay"] == 1e-4
