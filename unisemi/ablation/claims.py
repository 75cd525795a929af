"""A paper's claims about its table, as data in the spec, and a verdict on each from the stored rows.

    claims:
      - name: lambda_best                      # unique in the spec
        words: "The best performance is achieved when ... (lambda_contr = 10^-1)."
        where: "Sec. 4.4, Table 6"
        compare: {a: {lambda_contr: "1e-1"}, b: {lambda_contr: "1"}}     # cell a - cell b
      - name: large_lambda_degrades
        trend: {axis: lambda_contr, levels: ["1", "1e1", "1e2", "1e4"]}  # slope per level step
      - name: pnet_share
        ratio: {a: {row: split1_pnet}, b: {row: fully_supervised}, null: 90}   # 100 a / b, in %
    (each with name, words, where; `at: {axis: level}` fixes the axes a comparison leaves open,
    `domain:` picks a table domain, the first by default)

The paper's effect comes from the spec's `paper:` numbers of the same cells (a - b, the slope, the
share); `paper_effect:` gives it only where `paper:` has no number for a cell.

Each claim is measured on the (seed, split) pairs its cells share (paired.py): the per-pair
difference, slope or share, its mean and 95% interval (t, or bootstrap from 10 pairs; Welch's
interval where the cells share fewer than two pairs). The claim's null is 0 for a difference or
a slope, and the `null:` share of a ratio (the share at which the claim would fail). Verdict:
  reproduced    the interval excludes the null on the paper's side of it, by an effect the table
                can print (at least paired.RESOLUTION from the null);
  contradicted  otherwise, when the interval excludes the paper's effect (whatever its sign);
  inconclusive  neither; with the pairs a paired design would need to resolve the paper's effect
                from the null at the measured sd (noncentral t, 80% power, two-sided 5%).
A claim whose cells have no rows has no verdict ("not run") and is left out of the listings.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from unisemi.ablation import paired

CLAIM_KEYS = {"name", "words", "where", "at", "domain", "compare", "trend", "ratio", "paper_effect"}
KINDS = ("compare", "trend", "ratio")
PART_KEYS = {"compare": {"a", "b"}, "trend": {"axis", "levels"}, "ratio": {"a", "b", "null"}}
VERDICTS = ("reproduced", "contradicted", "inconclusive")
CSV_COLUMNS = ("suite", "table", "claim", "where", "words", "comparison", "domain", "effect", "lo", "hi", "n",
               "interval", "paper_effect", "null", "unit", "verdict", "seeds_needed", "profile", "git_rev")


@dataclasses.dataclass(frozen=True)
class Claim:
    name: str
    words: str
    where: str
    kind: str                 # compare | trend | ratio
    cells: tuple              # full cells (axis -> level): (a, b), or the trend's levels in order
    domain: str
    paper_effect: float
    null: float
    axis: str | None = None   # a trend's axis

    @property
    def unit(self) -> str:
        return {"compare": "mIoU", "trend": "mIoU per level", "ratio": "%"}[self.kind]

    def describe(self) -> str:
        if self.kind == "trend":
            return f"{self.axis}: " + " → ".join(str(c[self.axis]) for c in self.cells)
        a, b = (_short(c, other) for c, other in (self.cells, self.cells[::-1]))
        return f"{a} vs {b}" if self.kind == "compare" else f"{a} as % of {b}"


def _short(cell: dict, other: dict) -> str:
    """The levels of `cell` where it differs from `other` (the rest is shared context)."""
    diff = [f"{a}={v}" for a, v in cell.items() if other.get(a) != v]
    return ",".join(diff) or ",".join(f"{a}={v}" for a, v in cell.items())


def cell_id(cell: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in cell.items())


# --- the spec's `claims:` ------------------------------------------------------------------------

def parse_claims(path, raw: dict, paper_value, error=ValueError) -> list[Claim]:
    """The spec's `claims:` checked against its axes, domains and paper numbers; `paper_value(cell,
    domain)` is Spec.paper_value. Any problem raises `error` naming the file and the key."""
    items = raw.get("claims")
    if items is None:
        return []
    if not isinstance(items, list):
        raise error(f"{path}: key 'claims': expected a list of claims (name, words, where, and one of "
                    f"{', '.join(KINDS)}), got {items!r}")
    axes = {str(a): [str(x) for x in levels] for a, levels in raw["axes"].items()}
    domains = [str(d) for d in (raw.get("domains") or ["main"])]
    out, names = [], set()
    for i, item in enumerate(items):
        out.append(_parse_one(path, f"claims[{i}]", item, axes, domains, paper_value, error))
        if out[-1].name in names:
            raise error(f"{path}: key 'claims[{i}].name': {out[-1].name!r} is used twice")
        names.add(out[-1].name)
    return out


def _fail(error, path, key, msg):
    return error(f"{path}: key '{key}': {msg}")


def _check_keys(path, where, got, allowed, error):
    for k in got:
        if k not in allowed:
            raise error(f"{path}: unknown key '{where}.{k}' (expected one of {', '.join(sorted(allowed))})")


def _text(path, where, item, key, error) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _fail(error, path, f"{where}.{key}", f"expected text, got {value!r}")
    return value.strip()


def _partial(path, key, cell, axes, error) -> dict:
    """A mapping axis -> level, every level checked; levels come back as text."""
    if not isinstance(cell, dict) or not cell:
        raise _fail(error, path, key, f"expected a mapping of axis -> level, got {cell!r}")
    out = {}
    for axis, level in cell.items():
        if str(axis) not in axes:
            raise _fail(error, path, f"{key}.{axis}", f"not an axis (axes: {', '.join(axes)})")
        if str(level) not in axes[str(axis)]:
            raise _fail(error, path, f"{key}.{axis}", f"{level!r} is not a level of {axis!r} "
                        f"(levels: {', '.join(axes[str(axis)])})")
        out[str(axis)] = str(level)
    return out


def _full(path, key, cell: dict, at: dict, axes, error) -> dict:
    merged = {**at, **cell}
    missing = [a for a in axes if a not in merged]
    if missing:
        raise _fail(error, path, key, f"names no level of {', '.join(missing)} (give it here or in 'at')")
    return {a: merged[a] for a in axes}


def _parse_one(path, where, item, axes, domains, paper_value, error) -> Claim:
    if not isinstance(item, dict):
        raise _fail(error, path, where, f"expected a mapping (name, words, where, and one of {', '.join(KINDS)}), "
                    f"got {item!r}")
    _check_keys(path, where, item, CLAIM_KEYS, error)
    name, words, place = (_text(path, where, item, k, error) for k in ("name", "words", "where"))
    kinds = [k for k in KINDS if k in item]
    if len(kinds) != 1:
        raise _fail(error, path, where, f"expected exactly one of {', '.join(KINDS)}, got {kinds or 'none'}")
    kind = kinds[0]
    body = item[kind]
    if not isinstance(body, dict):
        raise _fail(error, path, f"{where}.{kind}", f"expected a mapping of {', '.join(sorted(PART_KEYS[kind]))}, "
                    f"got {body!r}")
    _check_keys(path, f"{where}.{kind}", body, PART_KEYS[kind], error)
    at = _partial(path, f"{where}.at", item["at"], axes, error) if "at" in item else {}
    domain = str(item.get("domain", domains[0]))
    if domain not in domains:
        raise _fail(error, path, f"{where}.domain", f"{domain!r} is not a table domain (domains: {', '.join(domains)})")
    null, axis = 0.0, None
    if kind == "trend":
        axis = str(body.get("axis"))
        if axis not in axes:
            raise _fail(error, path, f"{where}.trend.axis", f"{body.get('axis')!r} is not an axis (axes: {', '.join(axes)})")
        levels = body.get("levels")
        if not isinstance(levels, list) or len(levels) < 3:
            raise _fail(error, path, f"{where}.trend.levels", f"expected three or more levels of {axis!r} in the "
                        f"claim's order (two are a compare), got {levels!r}")
        cells = tuple(_full(path, f"{where}.trend", _partial(path, f"{where}.trend.levels", {axis: lv}, axes, error),
                            at, axes, error) for lv in levels)
    else:
        for part in ("a", "b"):
            if part not in body:
                raise _fail(error, path, f"{where}.{kind}.{part}", "missing (the two cells to compare)")
        cells = tuple(_full(path, f"{where}.{kind}.{p}", _partial(path, f"{where}.{kind}.{p}", body[p], axes, error),
                            at, axes, error) for p in ("a", "b"))
        if cells[0] == cells[1]:
            raise _fail(error, path, f"{where}.{kind}", f"a and b are the same cell ({cell_id(cells[0])})")
        if kind == "ratio":
            null = body.get("null")
            if isinstance(null, bool) or not isinstance(null, (int, float)):
                raise _fail(error, path, f"{where}.ratio.null", f"expected the share (in %) at which the claim "
                            f"would fail, e.g. 90, got {null!r}")
    numbers = [paper_value(c, domain) for c in cells]
    typed = item.get("paper_effect")
    if typed is not None and (isinstance(typed, bool) or not isinstance(typed, (int, float))):
        raise _fail(error, path, f"{where}.paper_effect", f"expected a number, got {typed!r}")
    if all(v is not None for v in numbers):
        if typed is not None:
            raise _fail(error, path, f"{where}.paper_effect", f"the spec's paper numbers give "
                        f"{effect_of(kind, numbers):+.2f} already; leave it out (one source per number)")
        effect = effect_of(kind, numbers)
    elif typed is None:
        lacking = cell_id(cells[[v is None for v in numbers].index(True)])
        raise _fail(error, path, f"{where}.paper_effect", f"'paper:' has no number for {lacking} ({domain}): "
                    f"give the paper's effect here")
    else:
        effect = float(typed)
    return Claim(name=name, words=words, where=place, kind=kind, cells=cells, domain=domain,
                 paper_effect=float(effect), null=float(null), axis=axis)


def effect_of(kind: str, values) -> float:
    """The claim's statistic of one set of numbers (the paper's, or one pair's): a - b, 100 a / b,
    or the least-squares slope over the trend's positions 0, 1, ..., k - 1."""
    v = np.asarray(values, float)
    if kind == "compare":
        return float(v[0] - v[1])
    if kind == "ratio":
        return float(100.0 * v[0] / v[1]) if v[1] else math.nan
    x = np.arange(len(v), dtype=float)
    return float(((x - x.mean()) * (v - v.mean())).sum() / ((x - x.mean()) ** 2).sum())


# --- measuring a claim ---------------------------------------------------------------------------

def measure(claim: Claim, pairs: list[dict]) -> dict:
    """The claim's statistic on the rows: `pairs` is {pair key: value} of each of its cells. Per
    (seed, split) shared by every cell, the statistic of that pair; their mean and interval."""
    shared = set.intersection(*(set(p) for p in pairs)) if pairs else set()
    per_pair = [effect_of(claim.kind, [p[k] for p in pairs]) for k in sorted(shared, key=str)]
    if len(per_pair) >= 2 or claim.kind == "trend":
        res = paired.paired(np.asarray(per_pair) - claim.null)
        res.update(mean=res["mean"] + claim.null, lo=res["lo"] + claim.null, hi=res["hi"] + claim.null)
        return res
    # fewer than two shared pairs: the cells' own samples, unpaired (a share gets no interval)
    a, b = (np.array(list(p.values()), float) for p in pairs)
    if claim.kind == "ratio":
        return {"n": min(len(a), len(b)), "mean": 100.0 * a.mean() / b.mean() if b.mean() else math.nan,
                "sd": math.nan, "lo": math.nan, "hi": math.nan, "interval": None}
    return paired.welch(a, b)


def verdict(claim: Claim, m: dict) -> tuple[str, int | None]:
    """(verdict, seeds needed when inconclusive) from the measured mean and interval (module doc)."""
    lo, hi, paper_effect, null = m["lo"], m["hi"], claim.paper_effect, claim.null
    if math.isnan(lo) or math.isnan(hi):
        return "inconclusive", None
    side = np.sign(paper_effect - null)
    visible = abs(m["mean"] - null) >= paired.RESOLUTION
    if visible and ((side > 0 and lo > null) or (side < 0 and hi < null)):
        return "reproduced", None
    if not lo <= paper_effect <= hi:
        return "contradicted", None
    sd = m["sd"]
    if m.get("interval") == "Welch" or math.isnan(sd):
        sd = m.get("sd_unpaired", math.nan)
    return "inconclusive", paired.seeds_needed(paper_effect - null, sd)


def claim_rows(spec, claims: list[Claim], summary, profile: str) -> list[dict]:
    """One row per claim whose cells all have rows in `summary` (report.summarize's lines, with
    their pairs and git revisions): what claims.csv, the table files and the pages show."""
    lines = {(r["cell"], r["domain"]): r for r in summary.to_dict("records")} if summary is not None else {}
    out = []
    for claim in claims:
        found = [lines.get((cell_id(c), claim.domain)) for c in claim.cells]
        if any(line is None or not line["n"] for line in found):
            continue
        m = measure(claim, [line["pairs"] for line in found])
        if m.get("interval") == "Welch":
            vals = [np.asarray(line["values"], float) for line in found]
            if all(len(v) >= 2 for v in vals):
                m["sd_unpaired"] = float(math.sqrt(sum(v.var(ddof=1) for v in vals)))
        what, seeds = verdict(claim, m)
        revs = sorted({r for line in found for r in (line.get("git_revs") or [])})
        out.append({"suite": spec.suite, "table": spec.name, "claim": claim.name, "where": claim.where,
                    "words": claim.words, "comparison": claim.describe(), "domain": claim.domain,
                    "effect": m["mean"], "lo": m["lo"], "hi": m["hi"], "n": int(m["n"]),
                    "interval": m.get("interval"), "paper_effect": claim.paper_effect, "null": claim.null,
                    "unit": claim.unit, "verdict": what, "seeds_needed": seeds, "profile": profile,
                    "git_rev": ",".join(revs)})
    return out


# --- how a verdict is shown ---------------------------------------------------------------------

def _n(x, signed=True, digits=2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def shown(row: dict) -> dict:
    """The text of a claim row's cells: ours (effect, interval, n), the paper's effect, the verdict."""
    ratio = row["unit"] == "%"
    digits = 1 if ratio else 2
    ours = f"{_n(row['effect'], not ratio, digits)} [{_n(row['lo'], not ratio, digits)}, {_n(row['hi'], not ratio, digits)}]"
    ours += f" {row['unit']} (n={row['n']}" + (f", {row['interval']}" if row["interval"] not in ("t", None) else "") + ")"
    paper = f"{_n(row['paper_effect'], not ratio, digits)} {row['unit']}"
    what = row["verdict"]
    if what == "inconclusive":
        seeds = row["seeds_needed"]
        what += f" (≈{seeds} seeds to resolve the paper's effect)" if seeds else " (no sd to size a design)"
    if ratio:
        what += f"; null {row['null']:g}%"
    return {"ours": ours, "paper": paper, "verdict_text": what}


def markdown(rows: list[dict], profile: str) -> str:
    if not rows:
        return ""
    lines = [f"#### Claims ({profile} profile)", "",
             "| claim | paper's words (where) | comparison | ours, 95% interval | paper | verdict |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        s = shown(r)
        cells = [r["claim"], f"“{r['words']}” ({r['where']})", r["comparison"], s["ours"], s["paper"], s["verdict_text"]]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    lines += ["", "Verdict: reproduced = the paired 95% interval excludes the null (0, or a ratio's stated "
              "share) on the paper's side; contradicted = it excludes the paper's effect; inconclusive = "
              "neither, with the seeds a paired design needs (80% power).", ""]
    return "\n".join(lines)


def latex(rows: list[dict], profile: str) -> str:
    if not rows:
        return ""
    specials = {"\\": "", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}",
                "^": r"\^{}", "~": r"\~{}", "→": r"$\to$", "≈": r"$\approx$", "–": "--"}
    esc = lambda s: "".join(specials.get(ch, ch) for ch in str(s))  # noqa: E731
    lines = [r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{llllll}", r"\toprule",
             r"claim & where & comparison & ours (95\%) & paper & verdict \\", r"\midrule"]
    for r in rows:
        s = shown(r)
        lines.append(" & ".join(esc(x) for x in (r["claim"], r["where"], r["comparison"], s["ours"],
                                                 s["paper"], s["verdict_text"])) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{Claims of the paper, {esc(profile)} profile: "
              r"verdicts from paired 95\% intervals.}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict]) -> str:
    import pandas as pd
    frame = pd.DataFrame(rows, columns=list(CSV_COLUMNS))
    frame["seeds_needed"] = frame["seeds_needed"].astype("Int64")     # a count, or empty
    return frame.to_csv(index=False)
