"""`python ablations/run.py table6 --profile paper` end to end on a Cityscapes fixture tree that
UNISEMI_DATA points at: the spec's paper profile resolves to the real dataset with no other change."""
from __future__ import annotations

import json

import pandas as pd
import pytest

import fixtures_real as fx
from unisemi.ablation import cli
from unisemi.data.splits import file_split, split_hash

# The paper profile's own settings, shrunk to a few seconds: a tiny encoder, 2 iterations, 32x64.
SMALL = ["model.encoder=tiny", "model.width=8", "model.head=fcn", "train.iterations=2",
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
