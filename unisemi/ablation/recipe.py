"""The recipe card of a spec's paper profile: the paper's recipe as data, checked against every cell.

`profiles.paper.recipe` maps each card item (ITEMS) to what the paper (or, where it is silent, the
closest release) says, with where it says it:

    schedule: {value: {train.iterations: 150000}, source: "Sec. 4.2 Optimization",
               cells: [{cell: {method: ass}, value: {train.iterations: 250000}, source: "ASS 4.2"}]}

`value` maps dotted config keys (and the table-level keys TABLE_KEYS) to the paper's values; `paper`
says in words what no config key can hold; `cells` gives other values to the cells that match a
partial cell (first match wins). `profiles.paper.departures` names each chosen difference:

    departures:
      data.batch_size: {value: 4, why: "...", cells: [{cell: {method: ours}, value: 2}]}
      lnet_batch: {item: batch, value: "20 (data.batch_size)", why: "..."}
      supervised_row: {item: augmentations, value: "...", why: "...", only: [{method: supervised}]}

A departure keyed by a config key documents the resolved value where it differs from the card;
one keyed by another name (with `item:`) documents a difference no config key expresses;
`only:` limits a departure to the cells that match one of its partial cells.
`compare` gives, per cell, each checked key's resolved value, card value and verdict: same,
departure (documented) or DIFFERS. A paper run refuses a DIFFERS (cli); the departures are
footnotes of the table (report.footnotes_for).
"""
from __future__ import annotations

import json
import math

from unisemi.ablation.spec import SpecError, check_keys, key_error, seed_list

ITEMS = ("backbone", "initialisation", "optimiser", "learning_rates", "schedule", "batch",
         "crop_scale", "augmentations", "evaluation", "splits")
# Optional: the method's own settings that the paper states (loss weights, class balancing).
OPTIONAL_ITEMS = ("method",)
ITEM_KEYS = {"value", "paper", "source", "cells"}
CELL_KEYS = {"cell", "value", "source"}
DEPARTURE_KEYS = {"value", "why", "item", "cells", "only"}
DEPARTURE_CELL_KEYS = {"cell", "value"}
# Settings of the table rather than of a trial's config: which evaluation the table shows and how
# many runs (seeds, each its own label split) a cell averages.
TABLE_KEYS = ("table.evaluation", "table.seeds")
MAPPING_FIELDS = ("data.roots", "data.split_lists")     # config fields whose value is a mapping

SAME, DEPARTURE, DIFFERS = "same", "departure", "DIFFERS"


class RecipeError(SpecError):
    """A paper profile's resolved config differs from its card where no departure says why."""


def card(spec) -> tuple[dict, dict]:
    """(recipe, departures) of the spec's paper profile, checked; ({}, {}) where it has none."""
    prof = (spec.raw.get("profiles") or {}).get("paper") or {}
    recipe, departures = prof.get("recipe"), prof.get("departures") or {}
    if recipe is None:
        return {}, {}
    check_card(spec.path, recipe, departures, spec.axes)
    return recipe, departures


def _check_entry(path, at: str, entry, allowed, shape: str, text_key: str, text_is: str) -> None:
    """A card item or a departure: a mapping of the allowed keys with a non-empty `text_key`."""
    if not isinstance(entry, dict):
        raise key_error(path, at, f"expected {shape}, got {entry!r}")
    check_keys(path, f"{at}.", entry, allowed)
    if not isinstance(entry.get(text_key), str) or not entry[text_key].strip():
        raise key_error(path, f"{at}.{text_key}", f"missing: {text_is}")


def check_card(path, recipe, departures, axes: dict) -> None:
    """Every item present with a source and a value or words; cells and departures well formed."""
    from unisemi.config import all_keys
    where = "profiles.paper.recipe"
    if not isinstance(recipe, dict):
        raise key_error(path, where, f"expected a mapping of card item -> {{value, source}}, got {recipe!r}")
    check_keys(path, f"{where}.", recipe, set(ITEMS) | set(OPTIONAL_ITEMS))
    missing = [i for i in ITEMS if i not in recipe]
    if missing:
        raise key_error(path, f"{where}.{missing[0]}", f"missing (a card names every item: {', '.join(ITEMS)})")
    known = set(all_keys()) | set(TABLE_KEYS)
    for item, entry in recipe.items():
        at = f"{where}.{item}"
        _check_entry(path, at, entry, ITEM_KEYS, "{value: {config key: value}, source: text}",
                     "source", "where the paper (or release) says it")
        if "value" not in entry and not entry.get("paper"):
            raise key_error(path, at, "expected a value (config key -> value) or the paper's words (paper:)")
        _check_values(path, f"{at}.value", entry.get("value") or {}, known)
        for i, over in enumerate(entry.get("cells") or []):
            check_keys(path, f"{at}.cells[{i}].", over, CELL_KEYS)
            _check_cell(path, f"{at}.cells[{i}].cell", over.get("cell"), axes)
            _check_values(path, f"{at}.cells[{i}].value", over.get("value") or {}, known)
    where = "profiles.paper.departures"
    if not isinstance(departures, dict):
        raise key_error(path, where, f"expected a mapping of key -> {{value, why}}, got {departures!r}")
    for key, entry in departures.items():
        at = f"{where}.{key}"
        _check_entry(path, at, entry, DEPARTURE_KEYS, "{value, why}", "why", "the reason for the difference")
        if "value" not in entry:
            raise key_error(path, f"{at}.value", "missing: the value this table runs")
        if key not in known and entry.get("item") not in recipe:
            raise key_error(path, at, f"neither a config key nor a departure with item: one of the card's "
                            f"items ({', '.join(recipe)})")
        for i, over in enumerate(entry.get("cells") or []):
            check_keys(path, f"{at}.cells[{i}].", over, DEPARTURE_CELL_KEYS)
            _check_cell(path, f"{at}.cells[{i}].cell", over.get("cell"), axes)
        only = entry.get("only")
        if only is not None:
            if not isinstance(only, list) or not only:
                raise key_error(path, f"{at}.only", f"expected a list of partial cells, got {only!r}")
            for i, partial in enumerate(only):
                _check_cell(path, f"{at}.only[{i}]", partial, axes)


def _check_values(path, at: str, values, known: set) -> None:
    if not isinstance(values, dict):
        raise key_error(path, at, f"expected a mapping of config key -> value, got {values!r}")
    for key in values:
        if key not in known:
            raise key_error(path, f"{at}.{key}", "not a config key (python -m unisemi keys) or "
                            f"one of {', '.join(TABLE_KEYS)}")


def _check_cell(path, at: str, cell, axes: dict) -> None:
    if not isinstance(cell, dict) or not cell:
        raise key_error(path, at, f"expected a partial cell {{axis: level}}, got {cell!r}")
    for axis, level in cell.items():
        if axis not in axes or str(level) not in {str(x) for x in axes[axis]}:
            raise key_error(path, f"{at}.{axis}", f"{level!r} is not a level of an axis of this spec")


def _matches(partial: dict, cell: dict) -> bool:
    return all(str(cell.get(a)) == str(level) for a, level in partial.items())


def _for_cell(entry: dict, cell: dict) -> dict:
    """An item's {key: (value, source)} at a cell: the first matching `cells` entry's values (with
    its source) over the item's own."""
    out = {k: (v, entry.get("source")) for k, v in (entry.get("value") or {}).items()}
    for over in entry.get("cells") or []:
        if _matches(over["cell"], cell):
            source = over.get("source") or entry.get("source")
            out.update({k: (v, source) for k, v in (over.get("value") or {}).items()})
            break
    return out


def _applies(entry: dict, cell: dict) -> bool:
    """A departure's `only: [partial cells]` limits it to the cells that match one of them."""
    only = entry.get("only")
    return only is None or any(_matches(partial, cell) for partial in only)


def _departure_value(entry: dict, cell: dict):
    for over in entry.get("cells") or []:
        if _matches(over["cell"], cell):
            return over["value"]
    return entry["value"]


def flat(config: dict, prefix: str = "") -> dict:
    """{'train': {'iterations': 5}} -> {'train.iterations': 5}; mapping-valued fields stay whole."""
    out = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key not in MAPPING_FIELDS:
            out.update(flat(v, f"{key}."))
        else:
            out[key] = v
    return out


def same(resolved, expected) -> bool:
    """Equal as config values: tuples as lists, ints as floats, YAML's '5e-4' strings as numbers."""
    a, b = json.loads(json.dumps(resolved)), json.loads(json.dumps(expected))
    if isinstance(a, (int, float)) and not isinstance(a, bool) and isinstance(b, str):
        try:
            b = float(b)
        except ValueError:
            return False
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def compare(recipe: dict, departures: dict, cell: dict, values: dict) -> list[dict]:
    """Each checked key of a cell: {item, key, resolved, card, verdict, note}. `values` is the
    cell's resolved config, flat (dotted keys) plus TABLE_KEYS. A key off the card is a
    departure where `departures` holds its resolved value, else DIFFERS."""
    rows = []
    for item in [*ITEMS, *(i for i in OPTIONAL_ITEMS if i in recipe)]:
        entry = recipe[item]
        expected = _for_cell(entry, cell)
        source = entry.get("source")
        for key, (want, key_source) in expected.items():
            got = values.get(key)
            if same(got, want):
                rows.append(dict(item=item, key=key, resolved=got, card=want, verdict=SAME, note=key_source))
                continue
            dep = departures.get(key)
            dep = dep if dep is not None and _applies(dep, cell) else None
            if dep is not None and same(got, _departure_value(dep, cell)):
                rows.append(dict(item=item, key=key, resolved=got, card=want, verdict=DEPARTURE,
                                 note=dep["why"]))
            else:
                note = key_source if dep is None else (f"{key_source}; the departure documents "
                                                  f"{_departure_value(dep, cell)!r}")
                rows.append(dict(item=item, key=key, resolved=got, card=want, verdict=DIFFERS, note=note))
        for key, dep in departures.items():
            if dep.get("item") == item and _applies(dep, cell):
                rows.append(dict(item=item, key=key, resolved=_departure_value(dep, cell),
                                 card=entry.get("paper", "(see source)"), verdict=DEPARTURE, note=dep["why"]))
        if not expected and not any(d.get("item") == item and _applies(d, cell) for d in departures.values()):
            rows.append(dict(item=item, key="-", resolved="-", card=entry.get("paper"), verdict=SAME,
                             note=f"{source} (no config key)"))
    return rows


def cell_values(spec, trial, profile: str = "paper") -> dict:
    """A trial's resolved config, flat, with the table-level keys."""
    values = flat(trial.config)
    values["table.evaluation"] = spec.evaluation
    values["table.seeds"] = len(seed_list(spec, None, profile))
    return values


def check_trials(spec, trials, profile: str = "paper") -> dict:
    """{cell_id: compare rows} for the first trial of every cell (the others differ in seeds and
    domains only). Empty where the spec's profile has no card."""
    recipe, departures = card(spec)
    if not recipe:
        return {}
    out = {}
    for t in trials:
        if t.cell_id not in out:
            out[t.cell_id] = compare(recipe, departures, t.cell, cell_values(spec, t, profile))
    return out


def unused_departures(spec, checked: dict) -> list[str]:
    """Config-key departures that document no cell's value (stale after a fix)."""
    _, departures = card(spec)
    used = {r["key"] for rows in checked.values() for r in rows if r["verdict"] == DEPARTURE}
    return [k for k in departures if k not in used]


def first_difference(spec, checked: dict) -> str | None:
    """The one-line refusal for the first DIFFERS, naming the cell, key, both values and source."""
    for cid, rows in checked.items():
        for r in rows:
            if r["verdict"] == DIFFERS:
                return (f"{spec.path}: cell {cid}: '{r['key']}' is {r['resolved']!r} where the paper's "
                        f"recipe ({r['item']}) has {r['card']!r} ({r['note']}); set the card's value or "
                        f"add profiles.paper.departures.{r['key']} with its reason")
    return None


def refuse_differences(spec, trials, profile: str) -> None:
    """Raise RecipeError before a paper run whose spec differs from its card undocumented."""
    if profile != "paper":
        return
    line = first_difference(spec, check_trials(spec, trials, profile))
    if line:
        raise RecipeError(line)


def _show(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 48 else text[:45] + "..."


def describe(spec, checked: dict) -> str:
    """What `--recipe` prints: per cell, each item's resolved value, card value and verdict."""
    if not checked:
        return f"{spec.path}: the paper profile has no recipe card (profiles.paper.recipe)"
    lines = []
    for cid, rows in checked.items():
        lines.append(f"cell {cid}")
        for r in rows:
            lines.append(f"  {r['item']:15s} {r['key']:34s} ours {_show(r['resolved']):26s} "
                         f"card {_show(r['card']):26s} {r['verdict']:9s} {r['note'] or ''}")
    counts = {v: sum(r["verdict"] == v for rows in checked.values() for r in rows)
              for v in (SAME, DEPARTURE, DIFFERS)}
    lines.append(f"{len(checked)} cells: {counts[SAME]} same, {counts[DEPARTURE]} documented departures, "
                 f"{counts[DIFFERS]} DIFFERS")
    return "\n".join(lines)


def departure_notes(spec) -> list[str]:
    """The table's footnotes for a paper profile: one per documented departure, with its reason."""
    _, departures = card(spec)
    notes = []
    for key, dep in departures.items():
        where = " or ".join(",".join(f"{a}={lv}" for a, lv in o.items()) for o in dep.get("only") or [])
        cells = "; ".join(f"{','.join(f'{a}={lv}' for a, lv in o['cell'].items())}: {_show(o['value'])}"
                          for o in dep.get("cells") or [])
        value = _show(dep["value"]) + (f" ({cells})" if cells else "")
        notes.append(f"Departure from the paper's recipe, {key} = {value}"
                     + (f" (cells {where})" if where else "") + f": {dep['why']}")
    return notes


def recipe_gate(spec, args, overrides: dict, only: dict) -> int | None:
    """The CLI's check, before anything runs: `--recipe` prints the comparison and gives the exit
    status; a paper run refuses the first undocumented difference of the spec (a key that the
    command line's --set moved is the user's own choice: a warning naming it); `--dry-run` shows
    that line and goes on to price the table. None: carry on."""
    import sys

    from unisemi.ablation.spec import expand
    if args.recipe and args.profile != "paper":
        raise SpecError("--recipe: the recipe card belongs to the paper profile; add --profile paper")
    trials, _ = expand(spec, "paper", args.seeds, overrides, only)
    checked = check_trials(spec, trials)
    if args.recipe:
        print(describe(spec, checked))
        return 1 if any(r["verdict"] == DIFFERS for rows in checked.values() for r in rows) else 0
    chosen = set(flat(overrides))
    for cid, rows in checked.items():
        for r in rows:
            if r["verdict"] == DIFFERS and r["key"] in chosen:
                print(f"warning: cell {cid}: --set {r['key']}={_show(r['resolved'])} departs from the paper's "
                      f"recipe ({_show(r['card'])}, {r['note']})", file=sys.stderr)
                r["verdict"] = DEPARTURE
    line = first_difference(spec, checked)
    if line and args.dry_run:
        print(f"recipe check: {line} (a paper run stops here)")
    elif line:
        raise RecipeError(line)
    return None
