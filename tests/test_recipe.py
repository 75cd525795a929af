"""Recipe cards (unisemi/ablation/recipe.py): every shipped paper profile against its card, the
verdicts on hand-made cards, the refusal of an undocumented difference before Ray starts, the
departures as footnotes, and per-profile level values (spec merge order) on transfer/table2."""
from __future__ import annotations

import pandas as pd
import pytest
import yaml
from conftest import TINY, tiny_spec

from unisemi.ablation import cli, recipe
from unisemi.ablation.report import footnotes_for
from unisemi.ablation.spec import SpecError, all_specs, expand, load_spec

# A card for the tiny spec's paper profile (the embedded world's city, as the laptop's): every item,
# each value the resolved one, except the two departures below.
CARD = {
    "backbone": {"value": {"model.encoder": "tiny", "model.head": "fcn"}, "source": "Sec. 1"},
    "initialisation": {"value": {"model.pretrained": "none"}, "source": "Sec. 2"},
    "optimiser": {"value": {"optim.momentum": 0.9, "optim.weight_decay": "5e-4"}, "source": "Sec. 3"},
    "learning_rates": {"value": {"optim.lr": 0.01}, "source": "Sec. 4",
                       "cells": [{"cell": {"variant": "b"}, "value": {"optim.lr": 0.02}, "source": "Table 9"}]},
    "schedule": {"value": {"train.iterations": 6}, "source": "Sec. 5"},
    "batch": {"value": {"data.batch_size": 4}, "source": "Sec. 6"},
    "crop_scale": {"value": {"data.crop": []}, "source": "Sec. 7"},
    "augmentations": {"paper": "flips", "source": "Sec. 8"},
    "evaluation": {"value": {"table.evaluation": "best"}, "source": "Sec. 9"},
    "splits": {"value": {"table.seeds": 2}, "source": "Sec. 10"},
}
DEPARTURES = {
    "data.batch_size": {"value": 2, "why": "two fit the laptop"},
    "table.evaluation": {"value": "final", "why": "the unbiased statistic"},
    "flips": {"item": "augmentations", "value": "none", "why": "no flips here"},
}


def _paper_spec(tmp_path, card=CARD, departures=DEPARTURES, paper_set=None):
    path = tiny_spec(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["profiles"]["paper"] = {"domains": {"main": "city"}, "set": {**TINY, **(paper_set or {})},
                                "recipe": card, "departures": departures}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _verdicts(spec, profile="paper"):
    trials, _ = expand(spec, profile, seeds=1)
    return {cid: {r["key"]: r["verdict"] for r in rows}
            for cid, rows in recipe.check_trials(spec, trials, profile).items()}


@pytest.mark.parametrize("suite,table", [(s, t) for s, t, _ in all_specs()])
def test_every_shipped_paper_profile_matches_its_card(suite, table):
    spec = load_spec(f"{suite}/{table}")
    card, _ = recipe.card(spec)
    assert set(recipe.ITEMS) <= set(card), "a card names every item"
    assert all(card[i].get("source") for i in card)
    trials, _ = expand(spec, "paper", seeds=1)
    checked = recipe.check_trials(spec, trials, "paper")
    assert set(checked) == {t.cell_id for t in trials}
    differs = [(cid, r["key"], r["resolved"], r["card"]) for cid, rows in checked.items()
               for r in rows if r["verdict"] == recipe.DIFFERS]
    assert differs == []
    assert recipe.unused_departures(spec, checked) == []
    # every paper profile names published weights, trained as the encoder it runs
    from unisemi.models.published import PUBLISHED
    for t in trials:
        name = t.config["model"]["pretrained"]
        assert name in PUBLISHED and PUBLISHED[name].encoder == t.config["model"]["encoder"], (t.cell_id, name)


def test_verdicts_same_departure_differs_per_cell_and_free_departures(tmp_path):
    spec = load_spec(str(_paper_spec(tmp_path)))
    v = _verdicts(spec)
    assert v["variant=a"]["optim.lr"] == v["variant=b"]["optim.lr"] == "same"    # b: its cells entry
    assert v["variant=a"]["optim.weight_decay"] == "same"                          # '5e-4' read as a number
    assert v["variant=a"]["data.batch_size"] == "departure"
    assert v["variant=a"]["table.evaluation"] == "departure"
    assert v["variant=a"]["flips"] == "departure"
    assert "DIFFERS" not in {x for cell in v.values() for x in cell.values()}
    # a departure whose value is not the resolved one documents nothing: DIFFERS
    spec = load_spec(str(_paper_spec(tmp_path, departures={**DEPARTURES, "data.batch_size":
                                                           {"value": 3, "why": "stale"}})))
    assert _verdicts(spec)["variant=a"]["data.batch_size"] == "DIFFERS"
    # a departure's own per-cell value: documents variant a's 2, not variant b's (it says 3 there)
    spec = load_spec(str(_paper_spec(tmp_path, departures={**DEPARTURES, "data.batch_size": {
        "value": 3, "why": "per cell", "cells": [{"cell": {"variant": "a"}, "value": 2}]}})))
    v = _verdicts(spec)
    assert v["variant=a"]["data.batch_size"] == "departure" and v["variant=b"]["data.batch_size"] == "DIFFERS"
    # `only:` limits a departure to the matching cells: elsewhere a config-key one documents nothing
    spec = load_spec(str(_paper_spec(tmp_path, departures={
        **DEPARTURES, "flips": {**DEPARTURES["flips"], "only": [{"variant": "b"}]},
        "data.batch_size": {"value": 2, "why": "b only", "only": [{"variant": "b"}]}})))
    v = _verdicts(spec)
    assert "flips" not in v["variant=a"] and v["variant=b"]["flips"] == "departure"
    assert v["variant=a"]["data.batch_size"] == "DIFFERS" and v["variant=b"]["data.batch_size"] == "departure"
    assert any(n.startswith("Departure from the paper's recipe, flips = none (cells variant=b): ")
               for n in recipe.departure_notes(spec))
    # a config-key departure that no cell needs is reported as unused
    spec = load_spec(str(_paper_spec(tmp_path, departures={**DEPARTURES, "optim.momentum": {
        "value": 0.5, "why": "stale"}})))
    trials, _ = expand(spec, "paper", seeds=1)
    assert recipe.unused_departures(spec, recipe.check_trials(spec, trials)) == ["optim.momentum"]
    # without the cells entry, variant b's 0.02 differs from the card's 0.01
    card = {**CARD, "learning_rates": {"value": {"optim.lr": 0.01}, "source": "Sec. 4"}}
    spec = load_spec(str(_paper_spec(tmp_path, card=card)))
    v = _verdicts(spec)
    assert v["variant=a"]["optim.lr"] == "same" and v["variant=b"]["optim.lr"] == "DIFFERS"


def test_a_paper_run_with_an_undocumented_difference_stops_before_ray(tmp_path, monkeypatch, capsys):
    from unisemi.ablation import runner

    def no_run(*a, **k):
        raise AssertionError("run_table reached")
    monkeypatch.setattr(runner, "run_table", no_run)
    path = _paper_spec(tmp_path, paper_set={"optim.momentum": 0.5})
    assert cli.main([str(path), "--profile", "paper", "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "cell variant=a" in err and "'optim.momentum' is 0.5" in err and "has 0.9" in err and "(Sec. 3)" in err
    # --dry-run shows the same line and prices the table
    assert cli.main([str(path), "--profile", "paper", "--dry-run", "--results", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "recipe check:" in out and "'optim.momentum' is 0.5" in out and "a paper run stops here" in out
    # --recipe prints every item and exits 1 on a DIFFERS
    assert cli.main([str(path), "--profile", "paper", "--recipe"]) == 1
    out = capsys.readouterr().out
    assert "optim.momentum" in out and "DIFFERS" in out and "2 cells:" in out


def test_a_set_on_the_command_line_is_a_warning_not_a_refusal(tmp_path, monkeypatch, capsys):
    from unisemi.ablation import runner

    class Reached(Exception):
        pass

    def reached(*a, **k):
        raise Reached
    monkeypatch.setattr(runner, "run_table", reached)
    path = _paper_spec(tmp_path)
    with pytest.raises(Reached):
        cli.main([str(path), "--profile", "paper", "--set", "train.iterations=3", "--results", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert "--set train.iterations=3 departs from the paper's recipe (6, Sec. 5)" in err


def test_a_card_without_an_item_or_with_an_unknown_key_is_a_one_line_error(tmp_path):
    card = {k: v for k, v in CARD.items() if k != "schedule"}
    with pytest.raises(SpecError, match=r"key 'profiles.paper.recipe.schedule': missing"):
        recipe.card(load_spec(str(_paper_spec(tmp_path, card=card))))
    card = {**CARD, "schedule": {"value": {"train.iteratoins": 6}, "source": "Sec. 5"}}
    with pytest.raises(SpecError, match=r"recipe.schedule.value.train.iteratoins': not a config key"):
        recipe.card(load_spec(str(_paper_spec(tmp_path, card=card))))
    deps = {**DEPARTURES, "flips": {"value": "none", "why": "no item"}}
    with pytest.raises(SpecError, match=r"departures.flips': neither a config key"):
        recipe.card(load_spec(str(_paper_spec(tmp_path, departures=deps))))
    deps = {**DEPARTURES, "data.batch_size": {"value": 2}}
    with pytest.raises(SpecError, match=r"departures.data.batch_size.why': missing"):
        recipe.card(load_spec(str(_paper_spec(tmp_path, departures=deps))))


def test_departures_are_footnotes_of_the_paper_table_only(tmp_path):
    spec = load_spec(str(_paper_spec(tmp_path)))
    empty = pd.DataFrame(columns=["profile", "is_final", "status", "trial", "cell"])
    paper = footnotes_for(spec, empty, {}, "paper")
    assert "Departure from the paper's recipe, data.batch_size = 2: two fit the laptop" in paper
    assert "Departure from the paper's recipe, flips = none: no flips here" in paper
    assert not any("Departure" in n for n in footnotes_for(spec, empty, {}, "laptop"))


def test_level_values_for_one_profile_do_not_reach_the_other(tmp_path):
    path = tiny_spec(tmp_path, extra_levels={"c": {"set": {"optim.lr": 0.03, "train.iterations": 5},
                                                   "profiles": {"laptop": {"set": {"train.iterations": 4}},
                                                                "paper": {"set": {"optim.lr": 0.04}}}}})
    raw = yaml.safe_load(path.read_text())
    raw["profiles"]["paper"] = {"domains": {"main": "city"}, "set": {**TINY, "train.iterations": 9}}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    spec = load_spec(str(path))
    got = {p: {t.cell_id: (t.config["optim"]["lr"], t.config["train"]["iterations"])
               for t in expand(spec, p, seeds=1)[0]} for p in ("laptop", "paper")}
    # order: profile set < level set < the level's own profile set
    assert got["laptop"]["variant=c"] == (0.03, 4) and got["paper"]["variant=c"] == (0.04, 5)
    assert got["laptop"]["variant=a"] == (0.01, 6) and got["paper"]["variant=a"] == (0.01, 9)
    raw["axes"]["variant"]["c"]["profiles"] = {"papr": {"set": {}}}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(SpecError, match=r"unknown key 'axes.variant.c.profiles.papr'"):
        load_spec(str(path))


def test_transfer_pnet_fine_tune_length_per_profile():
    spec = load_spec("transfer/table2")
    laptop = {t.cell_id: t.config for t in expand(spec, "laptop", seeds=1)[0]}
    paper = {t.cell_id: t.config for t in expand(spec, "paper", seeds=1)[0]}
    assert laptop["row=split1_pnet"]["train"]["iterations"] == 100
    assert laptop["row=split1_pnet"]["transfer"]["seg_lr"] == pytest.approx(0.1 / 100)   # the paper's 100x drop
    assert laptop["row=split1_lnet"]["train"]["iterations"] == 600
    # paper: 30 epochs of 10,582 images at batch 20 for the P-Net fine-tune, 6,000 steps elsewhere
    assert paper["row=split1_pnet"]["train"]["iterations"] == 15873 == -(-30 * 10582 // 20)
    assert paper["row=split1_pnet"]["transfer"]["seg_lr"] == pytest.approx(1e-5)
    assert paper["row=split1_pnet"]["data"]["batch_size"] == 20
    assert paper["row=split1_lnet"]["train"]["iterations"] == 6000


def test_recipe_flag_needs_the_paper_profile(capsys):
    assert cli.main(["transfer/table2", "--recipe"]) == 2
    assert "add --profile paper" in capsys.readouterr().err
