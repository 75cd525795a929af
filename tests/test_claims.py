"""Claims in a spec (unisemi/ablation/claims.py): parsing and its one-line errors, and a verdict
on each claim from rows written through the real store, in claims.csv, table.md, the table's
page, the index and `python -m unisemi claims`."""
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from conftest import tiny_spec
from report_rows import html_tables, write_rows
from unisemi import cli as unisemi_cli
from unisemi.ablation import cli, site
from unisemi.ablation.claims import parse_claims
from unisemi.ablation.spec import SpecError, expand, load_spec

# a spreads 5 per seed; the other cells are a plus a per-seed difference (seeds 0, 1, 2)
A = np.array([40.0, 45.0, 50.0])
DIFF = {"a": (0.0, 0.0, 0.0), "b": (1.1, 0.9, 1.0), "c": (-1.1, -0.9, -1.0), "d": (3.0, -2.0, 1.0)}
# the paper (tiny_spec): a 50, b 51, c 54, d 55
CLAIMS = [
    {"name": "b_beats_a", "words": "b is better than a", "where": "Sec. 1, Table 1",
     "compare": {"a": {"variant": "b"}, "b": {"variant": "a"}}},
    {"name": "c_beats_a", "words": "c is much better than a", "where": "Sec. 2",
     "compare": {"a": {"variant": "c"}, "b": {"variant": "a"}}},
    {"name": "d_beats_a", "words": "d is best", "where": "Sec. 3",
     "compare": {"a": {"variant": "d"}, "b": {"variant": "a"}}},
    {"name": "rising", "words": "a < b < c", "where": "Table 1",
     "trend": {"axis": "variant", "levels": ["a", "b", "c"]}},
    {"name": "b_share", "words": "b keeps more than all of a", "where": "Abstract",
     "ratio": {"a": {"variant": "b"}, "b": {"variant": "a"}, "null": 100}},
]


def _spec(tmp_path, claims=CLAIMS, cells=("a", "b", "c", "d")):
    path = tiny_spec(tmp_path / "specs", cells=cells, seeds=3)
    path.write_text(path.read_text() + yaml.safe_dump({"claims": claims}, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("claims")
    spec = load_spec(str(_spec(tmp_path)))
    trials, _ = expand(spec)
    results = tmp_path / "results"
    write_rows(results, spec, trials, value=lambda cid, seed: A[seed] + DIFF[cid.split("=")[1]][seed],
               git_rev="feed123")
    assert cli.main([str(spec.path), "--results", str(results), "--report-only"]) == 0
    csv = pd.read_csv(results / "tables" / "contrastive" / "table1" / "claims.csv").set_index("claim")
    return spec, results, csv


def _half(d):
    d = np.asarray(d)
    return stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))


def test_a_claim_whose_interval_excludes_zero_on_the_papers_side_is_reproduced(measured):
    _, _, csv = measured
    row = csv.loc["b_beats_a"]
    half = _half(DIFF["b"])
    assert row["effect"] == pytest.approx(1.0) and row["paper_effect"] == pytest.approx(1.0)
    assert (row["lo"], row["hi"]) == (pytest.approx(1.0 - half), pytest.approx(1.0 + half))
    assert (row["verdict"], row["n"], row["interval"]) == ("reproduced", 3, "t")
    assert (row["profile"], row["git_rev"], row["comparison"]) == ("laptop", "feed123", "variant=b vs variant=a")


def test_a_claim_whose_interval_excludes_the_papers_effect_is_contradicted(measured):
    _, _, csv = measured
    row = csv.loc["c_beats_a"]
    assert row["effect"] == pytest.approx(-1.0) and row["paper_effect"] == pytest.approx(4.0)
    assert row["hi"] < 0 and row["verdict"] == "contradicted" and math.isnan(row["seeds_needed"])
    # the trend a -> b -> c: per seed the slope over positions 0, 1, 2 is (c - a) / 2, the paper's 2
    trend = csv.loc["rising"]
    assert trend["effect"] == pytest.approx(-0.5) and trend["paper_effect"] == pytest.approx(2.0)
    assert trend["hi"] == pytest.approx(-0.5 + _half(np.array(DIFF["c"]) / 2))
    assert trend["verdict"] == "contradicted" and trend["unit"] == "mIoU per level"


def test_a_claim_neither_resolves_is_inconclusive_with_the_seeds_a_paired_design_needs(measured):
    _, _, csv = measured
    row = csv.loc["d_beats_a"]
    d = np.array(DIFF["d"])
    assert row["effect"] == pytest.approx(d.mean()) and row["paper_effect"] == pytest.approx(5.0)
    assert row["lo"] < 0 < 5.0 < row["hi"] and row["verdict"] == "inconclusive"
    # the fewest pairs with 80% power for +5 at the differences' sd, by the noncentral t directly
    sd = d.std(ddof=1)

    def power(n):
        crit = stats.t.ppf(0.975, n - 1)
        return stats.nct.sf(crit, n - 1, 5.0 / sd * math.sqrt(n)) + stats.nct.cdf(-crit, n - 1, 5.0 / sd * math.sqrt(n))
    assert row["seeds_needed"] == next(n for n in range(2, 100) if power(n) >= 0.8) == 5


def test_a_ratio_claim_is_the_per_seed_share_against_its_null(measured):
    _, _, csv = measured
    row = csv.loc["b_share"]
    shares = 100 * (A + DIFF["b"]) / A
    assert row["effect"] == pytest.approx(shares.mean()) and row["paper_effect"] == pytest.approx(102.0)
    assert row["lo"] == pytest.approx(shares.mean() - _half(shares)) and row["lo"] > 100
    assert row["verdict"] == "reproduced" and row["null"] == 100


def test_verdicts_are_under_the_table_on_its_page_and_in_the_index(measured):
    spec, results, _ = measured
    md = (results / "tables" / "contrastive" / "table1" / "table.md").read_text()
    claims_md = md[md.index("#### Claims (laptop profile)"):]
    assert "| b_beats_a | “b is better than a” (Sec. 1, Table 1) | variant=b vs variant=a |" in claims_md
    assert "| +5.00 mIoU | inconclusive (≈5 seeds to resolve the paper's effect) |" in claims_md
    assert r"\begin{tabular}{llllll}" in (results / "tables" / "contrastive" / "table1" / "table.tex").read_text()
    page = html_tables(site.page_path(results, "contrastive", "table1").read_text())["claims"]
    assert [r[0] for r in page[1:]] == ["b_beats_a", "c_beats_a", "d_beats_a", "rising", "b_share"]
    assert page[1][4:] == ["+1.00 [+0.75, +1.25] mIoU (n=3)", "+1.00 mIoU", "reproduced"]
    index = html_tables((site.report_root(results) / "index.html").read_text())["claims"]
    assert index[0] == ["paper", "table", "claim", "comparison", "ours, 95% interval", "paper's effect",
                        "verdict", "profile"]
    assert index[2][:3] == ["contrastive", "table1", "c_beats_a"] and index[2][6:] == ["contradicted", "laptop"]
    every = pd.read_csv(site.report_root(results) / site.CLAIMS_CSV)
    assert every["verdict"].tolist() == ["reproduced", "contradicted", "inconclusive", "contradicted", "reproduced"]


def test_python_m_unisemi_claims_lists_every_claim_with_its_verdict(measured, capsys):
    _, results, _ = measured
    assert unisemi_cli.main(["claims", "--results", str(results)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("contrastive/table1  b_beats_a (variant=b vs variant=a, laptop): ours "
                      "+1.00 [+0.75, +1.25] mIoU (n=3), paper +1.00 mIoU: reproduced")
    assert len(out) == 6 and out[-1].startswith("5 claim(s); wrote ")


def test_a_claim_without_rows_is_not_listed(tmp_path):
    spec = load_spec(str(_spec(tmp_path)))
    trials, _ = expand(spec)
    write_rows(tmp_path / "r", spec, trials, value=lambda cid, seed: A[seed] + DIFF[cid.split("=")[1]][seed],
               skip={t.key for t in trials if t.cell_id == "variant=d"})
    from unisemi.ablation.report import table_claims, table_parts
    from unisemi.ablation.store import TableStore
    df = TableStore(tmp_path / "r", spec.suite, spec.name).read()
    _, summary, _ = table_parts(spec, df, trials, {}, "laptop")
    listed = [r["claim"] for r in table_claims(spec, summary, "laptop")]
    assert listed == ["b_beats_a", "c_beats_a", "rising", "b_share"]


@pytest.mark.parametrize("claim, message", [
    ({"name": "x", "words": "w", "where": "s", "compare": {"a": {"variant": "z"}, "b": {"variant": "a"}}},
     "key 'claims[0].compare.a.variant': 'z' is not a level of 'variant' (levels: a, b, c, d)"),
    ({"name": "x", "words": "w", "where": "s", "compare": {"a": {"variant": "a"}, "b": {"variant": "a"}}},
     "key 'claims[0].compare': a and b are the same cell (variant=a)"),
    ({"name": "x", "words": "w", "where": "s", "compare": {"a": {"variant": "b"}, "b": {"variant": "a"}},
      "paper_effect": 1.0}, "key 'claims[0].paper_effect': the spec's paper numbers give +1.00 already"),
    ({"name": "x", "words": "w", "where": "s", "trend": {"axis": "variant", "levels": ["a", "b"]}},
     "key 'claims[0].trend.levels': expected three or more levels"),
    ({"name": "x", "words": "w", "where": "s", "ratio": {"a": {"variant": "b"}, "b": {"variant": "a"}}},
     "key 'claims[0].ratio.null': expected the share (in %)"),
    ({"name": "x", "words": "", "where": "s", "compare": {"a": {"variant": "b"}, "b": {"variant": "a"}}},
     "key 'claims[0].words': expected text, got ''"),
    ({"name": "x", "words": "w", "where": "s", "compare": {"a": {"variant": "b"}, "b": {"variant": "a"}},
      "domain": "far"}, "key 'claims[0].domain': 'far' is not a table domain (domains: main)"),
    ({"name": "x", "words": "w", "where": "s", "comapre": {}}, "unknown key 'claims[0].comapre'"),
])
def test_a_bad_claim_is_a_one_line_error_naming_the_key(tmp_path, claim, message):
    path = _spec(tmp_path, claims=[claim])
    with pytest.raises(SpecError) as err:
        load_spec(str(path))
    text = str(err.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


def test_the_paper_effect_comes_from_the_papers_numbers_or_is_given_where_it_has_none(tmp_path):
    path = _spec(tmp_path, claims=[{"name": "x", "words": "w", "where": "s",
                                    "compare": {"a": {"variant": "b"}, "b": {"variant": "a"}}}])
    raw = yaml.safe_load(path.read_text())
    raw["paper"]["b"] = None
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError, match=r"'paper:' has no number for variant=b \(main\): give the paper's effect"):
        load_spec(str(path))
    raw["claims"][0]["paper_effect"] = 2.5
    path.write_text(yaml.safe_dump(raw))
    spec = load_spec(str(path))
    (claim,) = parse_claims(spec.path, spec.raw, spec.paper_value)
    assert claim.paper_effect == 2.5 and claim.cells == ({"variant": "b"}, {"variant": "a"})


def test_the_shipped_specs_claims_parse():
    from unisemi.ablation.spec import all_specs
    found = {}
    for suite, table, path in all_specs():
        spec = load_spec(str(path))
        found[f"{suite}/{table}"] = [c.name for c in parse_claims(spec.path, spec.raw, spec.paper_value)]
    assert all(found.values()), [k for k, v in found.items() if not v]


def test_the_tex_and_markdown_verdicts_escape_what_the_papers_words_hold():
    from unisemi.ablation import claims
    row = {"claim": "x_y", "where": "Sec. 5, #City = 50", "words": "a | b at 10^-1", "comparison": "lambda: 1 → 1e1",
           "effect": 1.0, "lo": 0.5, "hi": 1.5, "n": 2, "interval": "t", "paper_effect": 0.3, "null": 0.0,
           "unit": "mIoU", "verdict": "inconclusive", "seeds_needed": 7}
    tex = claims.latex([row], "laptop")
    assert (r"x\_y & Sec. 5, \#City = 50 & lambda: 1 $\to$ 1e1 & +1.00 [+0.50, +1.50] mIoU (n=2) & +0.30 mIoU & "
            r"inconclusive ($\approx$7 seeds to resolve the paper's effect) \\") in tex
    md = claims.markdown([row], "laptop")
    assert "| x_y | “a \\| b at 10^-1” (Sec. 5, #City = 50) | lambda: 1 → 1e1 |" in md


def test_a_consistent_effect_below_the_printed_digit_never_reproduces_a_claim():
    from unisemi.ablation import paired
    from unisemi.ablation.claims import Claim, verdict
    claim = Claim(name="too_low_dilutes", words="w", where="s", kind="compare",
                  cells=({"l": "1e-1"}, {"l": "1e-4"}), domain="main", paper_effect=1.8, null=0.0)
    # table6 at two seeds: 1e-1 - 1e-4 = +0.0062 and +0.0061, an interval far from 0 and from +1.8
    m = paired.paired([0.0062, 0.0061])
    assert m["lo"] > 0 and m["hi"] < 1.8
    assert verdict(claim, m) == ("contradicted", None)
    # the same interval around +0.6 reproduces it
    m = paired.paired([0.6062, 0.6061])
    assert verdict(claim, m) == ("reproduced", None)
    # and a paper effect inside a wide interval is inconclusive, with the seeds to resolve it
    m = paired.paired([0.0, 3.0])
    assert verdict(claim, m) == ("inconclusive", paired.seeds_needed(1.8, m["sd"]))
