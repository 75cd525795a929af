"""Ablation specs: one YAML file per paper table, expanded into trials (cell x split x seed).

A spec names a base preset, the grid axes (each level is a set of config overrides), the seeds,
the layout of the generated table, the paper's numbers per cell and, per data profile, which
domains stand in for the paper's datasets. See ablations/README.md for the full schema.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
from pathlib import Path

import yaml

from unisemi.added_fields import drop_added_fields
from unisemi.config import ConfigError, _merge, build_config, load_values, to_dict, yaml_error_text

ABLATIONS_DIR = Path(__file__).resolve().parents[2] / "ablations"
SUITES = ("contrastive", "universal", "ass", "transfer")
DEFAULT_SUITE = "contrastive"
PROFILES = ("laptop", "paper")

SPEC_KEYS = {"title", "reference", "preset", "evaluation", "metric", "seeds", "splits", "domains",
             "profiles", "axes", "layout", "baseline", "plot", "paper", "footnotes", "per_class",
             "not_run", "ratio_to", "claims"}
LEVEL_KEYS = {"set", "per_domain", "label", "paper_only", "marked_classes", "profiles"}
LEVEL_PROFILE_KEYS = {"set"}
PROFILE_KEYS = {"domains", "set", "sources", "only", "seeds", "recipe", "departures"}
NOT_RUN_KEYS = {"cell", "why"}
LAYOUT_KEYS = {"rows", "columns"}
PLOT_KEYS = {"kind", "axis", "log", "x"}


# The reason of a cell that `not_run:` names starts so: such a cell cannot run by construction.
NOT_RUN = "not runnable"


class SpecError(ValueError):
    """A problem with a spec file; the message names the file, key and value."""


@dataclasses.dataclass(frozen=True)
class Trial:
    """One unit of work: a cell of the grid at one (split, seed), possibly restricted to one domain."""
    key: str                 # stable id, also the store's file name stem
    cell: dict               # axis -> level
    cell_id: str
    seed: int
    split_seed: int
    domain_keys: tuple       # the table's domain keys this trial reports (e.g. ('cs', 'cvd'))
    domain_map: dict         # data domain -> table domain key
    config: dict             # fully resolved config values (Config as a dict)
    config_hash: str

    def payload(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Spec:
    suite: str
    name: str
    path: Path
    raw: dict

    @property
    def title(self) -> str:
        return self.raw["title"]

    @property
    def axes(self) -> dict:
        return self.raw["axes"]

    @property
    def domains(self) -> list:
        return list(self.raw.get("domains") or ["main"])

    @property
    def evaluation(self) -> str:
        return self.raw.get("evaluation", "final")

    @property
    def metric(self) -> str:
        return self.raw.get("metric", "miou")

    @property
    def layout(self) -> dict:
        axes = list(self.axes)
        layout = dict(self.raw.get("layout") or {})
        layout.setdefault("rows", axes[0])
        layout.setdefault("columns", axes[1] if len(axes) > 1 else None)
        return layout

    def cells(self) -> list[dict]:
        names = list(self.axes)
        return [dict(zip(names, levels))
                for levels in itertools.product(*(list(self.axes[a]) for a in names))]

    def level(self, axis: str, name: str) -> dict:
        return self.axes[axis][name] or {}

    def pending_reason(self, cell: dict) -> str | None:
        """Why a cell does not run: a paper-only reference level (`paper_only: <whose method>`,
        shown with the paper's number and never run), or a method not implemented yet; else None."""
        from unisemi.methods import METHODS
        for axis, level in cell.items():
            whose = self.level(axis, level).get("paper_only")
            if whose:
                return f"paper-only reference row ({whose}): the paper's number, never run here"
        for entry in self.raw.get("not_run") or ():
            if all(str(cell[a]) == str(level) for a, level in entry["cell"].items()):
                return f"{NOT_RUN} ({entry['why']})"
        method = self.cell_values(cell).get("method")
        if method is not None and method not in METHODS:
            return f"method '{method}' is not implemented yet"
        return None

    def cell_values(self, cell: dict, profile: str | None = None) -> dict:
        """The levels' values of a cell, merged over the profile's. Merge order, per level in axis
        order: the level's `set`, then its `profiles.<profile>.set`; so a value a level means for
        one profile only (the laptop's 100-step P-Net fine-tune) never reaches the other."""
        values: dict = {}
        for axis, level in cell.items():
            body = self.level(axis, level)
            values = _merge(values, dotted_to_nested(body.get("set") or {}))
            if profile is not None:
                own = ((body.get("profiles") or {}).get(profile) or {}).get("set") or {}
                values = _merge(values, dotted_to_nested(own))
        return values

    def level_set(self, axis: str, level, profile: str | None = None) -> dict:
        """A level's dotted values at a profile: its `set` under its `profiles.<profile>.set`."""
        body = self.level(axis, level)
        own = ((body.get("profiles") or {}).get(profile) or {}).get("set") or {} if profile else {}
        return {**(body.get("set") or {}), **own}

    def paper_value(self, cell: dict, domain_key: str):
        """The paper's number for a cell and domain, or None where the paper has none."""
        node = self.raw.get("paper")
        layout = self.layout
        for axis in (layout["rows"], layout["columns"]):
            if axis is None or not isinstance(node, dict):
                continue
            node = node.get(str(cell[axis]))
        if isinstance(node, dict):
            node = node.get(domain_key)
        return node if isinstance(node, (int, float)) else None


def _check_level_profiles(path, where: str, profiles) -> None:
    """A level's `profiles: {laptop: {set: {...}}, paper: {set: {...}}}`: values for one profile."""
    if profiles is None:
        return
    if not isinstance(profiles, dict):
        raise key_error(path, where, f"expected a mapping of profile -> {{set: {{...}}}}, got {profiles!r}")
    check_keys(path, f"{where}.", profiles, set(PROFILES))
    for prof, body in profiles.items():
        if not isinstance(body, dict):
            raise key_error(path, f"{where}.{prof}", f"expected {{set: {{config key: value}}}}, got {body!r}")
        check_keys(path, f"{where}.{prof}.", body, LEVEL_PROFILE_KEYS)
        if not isinstance(body.get("set") or {}, dict):
            raise key_error(path, f"{where}.{prof}.set", f"expected a mapping of config key -> value, got {body['set']!r}")


def _checked_paper(path, paper, axes: dict, layout: dict, domains: list) -> dict:
    """`paper:` nested by the row axis, then the column axis, then optionally by table domain,
    with numbers (or null) at the leaves. Every key must name a level (matched as text, so an
    unquoted `1:` finds level "1"); the keys come back as strings, so no paper value is dropped."""
    names = list(axes)
    order = [layout.get("rows", names[0])]
    columns = layout.get("columns", names[1] if len(names) > 1 else None)
    if columns is not None:
        order.append(columns)

    def leaf(node, where):
        if isinstance(node, dict):
            for k, v in node.items():
                if str(k) not in domains:
                    raise key_error(path, f"{where}{k}", f"not a table domain (domains: {', '.join(domains)})")
                leaf(v, f"{where}{k}.")
            return {str(k): v for k, v in node.items()}
        if node is not None and (isinstance(node, bool) or not isinstance(node, (int, float))):
            raise key_error(path, where.rstrip("."), f"expected a number or null, got {node!r}")
        return node

    def walk(node, left, where):
        if not left or not isinstance(node, dict):
            return leaf(node, where)
        axis = left[0]
        levels = [str(x) for x in axes[axis]]
        out = {}
        for k, v in node.items():
            if str(k) not in levels:
                raise key_error(path, f"{where}{k}", f"not a level of the {axis!r} axis "
                                f"(levels: {', '.join(levels)})")
            out[str(k)] = walk(v, left[1:], f"{where}{k}.")
        return out

    return walk(paper, order, "paper.")


def _levels_of(path, key: str, axis, levels, axes: dict) -> list[str]:
    """The levels named under `key` for `axis`, as strings, each checked against the spec's axes."""
    if axis not in axes:
        raise key_error(path, key, f"'{axis}' is not an axis (axes: {', '.join(axes)})")
    known = [str(x) for x in axes[axis]]
    for level in levels:
        if str(level) not in known:
            raise key_error(path, key, f"{level!r} is not a level of the {axis!r} axis (levels: {', '.join(known)})")
    return [str(x) for x in levels]


def _checked_only(path, key: str, only, axes: dict) -> dict:
    """A profile's `only: {axis: [levels]}` (or one level): the cells that profile runs unless
    the command line's --only names the axis; returned as {axis: [level strings]}."""
    if not isinstance(only, dict) or not only:
        raise key_error(path, key, f"expected a mapping of axis -> levels, e.g. {{city: [c100, c500]}}, got {only!r}")
    out = {}
    for axis, levels in only.items():
        levels = levels if isinstance(levels, list) else [levels]
        if not levels:
            raise key_error(path, f"{key}.{axis}", "an empty list of levels would run nothing")
        out[str(axis)] = _levels_of(path, f"{key}.{axis}", axis, levels, axes)
    return out


def _check_not_run(path, entries, axes: dict) -> None:
    """`not_run: [{cell: {axis: level, ...}, why: text}]`: the cells matching each partial cell
    (a subset of the axes) are pending with that reason, never run (e.g. the Oracle at #City = 0,
    which has nothing to train on)."""
    if not isinstance(entries, list) or not entries:
        raise key_error(path, "not_run", f"expected a list of {{cell: {{axis: level}}, why: text}}, got {entries!r}")
    for i, entry in enumerate(entries):
        where = f"not_run[{i}]"
        if not isinstance(entry, dict):
            raise key_error(path, where, f"expected {{cell: {{axis: level}}, why: text}}, got {entry!r}")
        check_keys(path, f"{where}.", entry, NOT_RUN_KEYS)
        cell, why = entry.get("cell"), entry.get("why")
        if not isinstance(cell, dict) or not cell:
            raise key_error(path, f"{where}.cell", f"expected a mapping of axis -> level, got {cell!r}")
        for axis, level in cell.items():
            _levels_of(path, f"{where}.cell.{axis}", axis, [level], axes)
        if not isinstance(why, str) or not why.strip():
            raise key_error(path, f"{where}.why", f"expected the reason as text, got {why!r}")


def _substitute_other(values, keys, domains, dmap: dict, path, cid):
    """In a per-domain trial, the string "{other}" stands for the dataset of the table's other
    domain (e.g. finetune's source); it needs exactly two table domains."""
    def walk(v):
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if v == "{other}":
            others = [d for d in domains if d not in keys]
            if len(keys) != 1 or len(others) != 1:
                raise SpecError(f"{path}: cell {cid}: '{{other}}' needs a per-domain cell of a "
                                f"two-domain table (domains: {domains})")
            return dmap[others[0]]
        return v
    return walk(values)


def cell_id(cell: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in cell.items())


def dotted_to_nested(values: dict) -> dict:
    out: dict = {}
    for key, value in values.items():
        nested = value
        for part in reversed(str(key).split(".")):
            nested = {part: nested}
        out = _merge(out, nested)
    return out


def key_error(path, key: str, msg: str, error=None) -> ValueError:
    """'<file>: key '<key>': <msg>' as `error` (SpecError by default; search spaces pass theirs)."""
    return (error or SpecError)(f"{path}: key '{key}': {msg}")


def check_keys(path, where: str, got: dict, allowed: set, error=None) -> None:
    """Reject a key outside `allowed`, naming the nearest valid one."""
    for k in got:
        if k not in allowed:
            close = difflib.get_close_matches(str(k), sorted(allowed), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (expected one of {', '.join(sorted(allowed))})"
            raise (error or SpecError)(f"{path}: unknown key '{where}{k}'{hint}")


def all_specs() -> list[tuple[str, str, Path]]:
    out = []
    for suite in SUITES:
        for p in sorted((ABLATIONS_DIR / suite).glob("*.yaml")):
            out.append((suite, p.stem, p))
    return out


def resolve(name: str) -> tuple[str, str, Path]:
    """'table6' -> contrastive/table6; 'universal/table2' as given; a path to a YAML file as is."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise SpecError(f"{path}: spec file not found")
        return path.parent.name, path.stem, path
    suite, _, table = name.rpartition("/")
    suite = suite or DEFAULT_SUITE
    path = ABLATIONS_DIR / suite / f"{table}.yaml"
    if path.exists():
        return suite, table, path
    known = [f"{s}/{t}" for s, t, _ in all_specs()]
    close = difflib.get_close_matches(f"{suite}/{table}", known, n=3, cutoff=0.5)
    hint = f"; close matches: {', '.join(close)}" if close else f"; known: {', '.join(known) or 'none'}"
    raise SpecError(f"unknown table '{name}' (looked for {path}){hint}")


def load_spec(name: str) -> Spec:
    suite, table, path = resolve(name)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SpecError(yaml_error_text(path, exc)) from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: expected a mapping, got {type(raw).__name__}")
    validate_spec(path, raw)
    return Spec(suite, table, path, raw)


def validate_spec(path: Path, raw: dict) -> None:
    check_keys(path, "", raw, SPEC_KEYS)
    for key in ("title", "preset", "axes"):
        if key not in raw:
            raise key_error(path, key, "missing (every spec needs title, preset and axes)")
    if not isinstance(raw["title"], str):
        raise key_error(path, "title", f"expected a string, got {raw['title']!r}")
    axes = raw["axes"]
    if not isinstance(axes, dict) or not axes:
        raise key_error(path, "axes", f"expected a non-empty mapping of axis -> levels, got {axes!r}")
    for axis, levels in axes.items():
        if not isinstance(levels, dict) or not levels:
            raise key_error(path, f"axes.{axis}", f"empty grid: expected a mapping of level -> overrides, got {levels!r}")
        for level, body in levels.items():
            body = body or {}
            if not isinstance(body, dict):
                raise key_error(path, f"axes.{axis}.{level}", f"expected a mapping, got {body!r}")
            check_keys(path, f"axes.{axis}.{level}.", body, LEVEL_KEYS)
            if not isinstance(body.get("set") or {}, dict):
                raise key_error(path, f"axes.{axis}.{level}.set", f"expected a mapping of config key -> value, got {body['set']!r}")
            _check_level_profiles(path, f"axes.{axis}.{level}.profiles", body.get("profiles"))
    _check_seeds(path, "seeds", raw.get("seeds", 2))
    splits = raw.get("splits", "same")
    if splits != "same" and not (isinstance(splits, list) and splits and all(isinstance(s, int) for s in splits)):
        raise key_error(path, "splits", f"expected 'same' or a non-empty list of ints, got {splits!r}")
    if raw.get("evaluation", "final") not in ("final", "best"):
        raise key_error(path, "evaluation", f"{raw['evaluation']!r} is not valid, expected final or best")
    domains = raw.get("domains") or ["main"]
    if not isinstance(domains, list):
        raise key_error(path, "domains", f"expected a list of the table's domain keys, got {domains!r}")
    profiles = raw.get("profiles") or {}
    check_keys(path, "profiles.", profiles, set(PROFILES))
    for prof, body in profiles.items():
        check_keys(path, f"profiles.{prof}.", body or {}, PROFILE_KEYS)
        dmap = (body or {}).get("domains") or {}
        missing = [d for d in domains if d not in dmap]
        if missing:
            raise key_error(path, f"profiles.{prof}.domains", f"no dataset for table domain(s) {missing}")
        if "only" in (body or {}):
            body["only"] = _checked_only(path, f"profiles.{prof}.only", body["only"], axes)
        if "seeds" in (body or {}):
            _check_seeds(path, f"profiles.{prof}.seeds", body["seeds"])
    if "not_run" in raw:
        _check_not_run(path, raw["not_run"], axes)
    layout = raw.get("layout") or {}
    check_keys(path, "layout.", layout, LAYOUT_KEYS)
    for k, axis in layout.items():
        if axis is not None and axis not in axes:
            raise key_error(path, f"layout.{k}", f"'{axis}' is not an axis (axes: {', '.join(axes)})")
    if raw.get("paper") is not None:
        raw["paper"] = _checked_paper(path, raw["paper"], axes, layout, domains)
    ratio_to = raw.get("ratio_to") or {}
    if not isinstance(ratio_to, dict):
        raise key_error(path, "ratio_to", f"expected a mapping axis -> level, got {ratio_to!r}")
    baseline = raw.get("baseline") or {}
    for axis, level in [*baseline.items(), *ratio_to.items()]:
        if axis not in axes or str(level) not in {str(x) for x in axes[axis]}:
            raise key_error(path, f"baseline.{axis}", f"{level!r} is not a level of an axis")
    plot = raw.get("plot") or {}
    check_keys(path, "plot.", plot, PLOT_KEYS)
    if plot and plot.get("kind") not in ("line", "bars"):
        raise key_error(path, "plot.kind", f"{plot.get('kind')!r} is not valid, expected line or bars")
    from unisemi.ablation.claims import parse_claims     # imports nothing of this module
    parse_claims(path, raw, Spec("", "", path, raw).paper_value, SpecError)


def _check_seeds(path, key: str, seeds) -> None:
    if isinstance(seeds, bool) or not isinstance(seeds, (int, list)):
        raise key_error(path, key, f"expected a count or a list of ints, got {seeds!r}")
    if isinstance(seeds, int) and seeds < 1:
        raise key_error(path, key, f"{seeds!r} is not valid, expected >= 1")


def seed_list(spec: Spec, seeds: int | None, profile: str | None = None) -> list[int]:
    """--seeds, else the profile's `seeds` (the paper's run count), else the spec's."""
    if seeds is not None:
        if seeds < 1:
            raise SpecError(f"--seeds {seeds}: expected >= 1")
        return list(range(seeds))
    own = ((spec.raw.get("profiles") or {}).get(profile) or {}).get("seeds") if profile else None
    raw = own if own is not None else spec.raw.get("seeds", 2)
    return list(range(raw)) if isinstance(raw, int) else [int(s) for s in raw]


def parse_only(items) -> dict:
    """['N=N100', 'method=univ_full'] -> {'N': {'N100'}, 'method': {'univ_full'}}."""
    out: dict = {}
    for item in items or ():
        axis, sep, level = str(item).partition("=")
        if not sep:
            raise SpecError(f"--only {item!r}: expected AXIS=LEVEL, e.g. N=N100")
        out.setdefault(axis, set()).add(level)
    return out


SEED_KEYS = (("train", "seed"), ("data", "split_seed"))
# Settings that change how fast a trial runs and never what it computes (tested so), so that
# turning them does not make a stored trial a new one. The older ones of that kind (data.workers,
# data.prefetch) stay in the identity, because taking them out would rename every stored trial.
SPEED_KEYS = (("data", "cache_resized"),)
# Settings of that kind that were in the identity before: held at their default there instead of
# dropped, so stored keys stay. train.checkpoint_every only adds checkpoints between evaluations.
FIXED_KEYS = {("train", "checkpoint_every"): 0}

def seeds_aside(config: dict) -> dict:
    """A copy of a resolved config without its seeds (`train.seed`, `data.split_seed`) and its
    speed-only settings."""
    c = json.loads(json.dumps(config))
    for section, name in SEED_KEYS + SPEED_KEYS:
        c.get(section, {}).pop(name, None)
    for (section, name), value in FIXED_KEYS.items():
        if name in c.get(section, {}):
            c[section][name] = value
    return drop_added_fields(c)     # fields added after tables were stored (added_fields.py)


def config_identity(config: dict) -> str:
    """Hash of a resolved config with the seeds aside: trials that share it ran the same settings
    (and cost the same to run). Part of every trial key, and the key under which `--dry-run` prices stored trials."""
    return hashlib.sha1(json.dumps(seeds_aside(config), sort_keys=True).encode()).hexdigest()[:16]


def trial_key(spec: Spec, cid: str, seed: int, split_seed: int, keys, profile: str, config: dict) -> str:
    """The ledger's identity of a trial: which table, cell, seed, split, domains, data profile and
    settings. A change of `--set`, of the profile or of the spec's levels gives new keys, so a
    `--resume` never takes a trial run with other settings for done."""
    ident = json.dumps([spec.suite, spec.name, cid, seed, split_seed, list(keys), profile,
                        config_identity(config)], sort_keys=True)
    return hashlib.sha1(ident.encode()).hexdigest()[:16]


def check_method_keys(spec: Spec, cell: dict, cid: str, method: str, profile: str | None = None) -> None:
    """A level that sets a key of another method's section would change nothing in this cell,
    which would then silently equal another cell: an error naming the key, the method and the cell."""
    from unisemi.config import foreign_method_keys
    for axis, level in cell.items():
        keys = foreign_method_keys(dotted_to_nested(spec.level_set(axis, level, profile)), method)
        if keys:
            raise SpecError(f"{spec.path}: cell {cid} runs method '{method}', but its level "
                            f"{axis}={level} sets '{keys[0]}', a key of another method that this cell ignores")


def preset_values(spec: Spec, profile_body: dict) -> dict:
    """The values every cell of a profile starts from: the spec's preset under the profile's `set`."""
    return _merge(load_values(spec.raw["preset"]), dotted_to_nested(profile_body.get("set") or {}))


def _rename_sources(values: dict, sources: dict) -> dict:
    """A profile's `sources: {game: gta5}` swaps the source domain a level names (the embedded
    world's stand-in) for the profile's dataset, in every method section's `source_domain`."""
    out = dict(values)
    for section, body in values.items():
        if isinstance(body, dict) and body.get("source_domain") in sources:
            out[section] = {**body, "source_domain": sources[body["source_domain"]]}
    return out


def expand(spec: Spec, profile: str = "laptop", seeds: int | None = None,
           overrides: dict | None = None, only: dict | None = None) -> tuple[list[Trial], dict]:
    """All trials of a spec (restricted to the cells whose levels are in `only`, if given), plus
    {cell_id: reason} for the cells that cannot run yet.

    A profile's own `only` restricts it further (the laptop subset of a long sweep); an axis that
    the command line's `only` names is taken from the command line instead, so `--only city=c50`
    runs a row the profile leaves out."""
    for axis, levels in (only or {}).items():
        if axis not in spec.axes:
            raise SpecError(f"--only {axis}=...: '{axis}' is not an axis of {spec.path} "
                            f"(axes: {', '.join(spec.axes)})")
        unknown = sorted(set(levels) - {str(x) for x in spec.axes[axis]})
        if unknown:
            raise SpecError(f"--only {axis}={unknown[0]}: not a level of '{axis}' "
                            f"(levels: {', '.join(map(str, spec.axes[axis]))})")
    if profile not in PROFILES:
        raise SpecError(f"--profile {profile!r}: expected one of {', '.join(PROFILES)}")
    prof = (spec.raw.get("profiles") or {}).get(profile)
    if prof is None:
        raise SpecError(f"{spec.path}: no '{profile}' profile (key 'profiles.{profile}')")
    dmap_table = dict(prof.get("domains") or {})     # table key -> dataset/domain name
    only = {**{a: set(levels) for a, levels in (prof.get("only") or {}).items()}, **(only or {})}
    from unisemi.data import known_domains
    for key, name in dmap_table.items():
        if name not in known_domains():
            raise SpecError(f"{spec.path}: profile '{profile}' maps '{key}' to '{name}', which is neither "
                            f"a domain of the embedded world nor a real dataset "
                            f"(known: {', '.join(known_domains())})")
    base = preset_values(spec, prof)
    splits = spec.raw.get("splits", "same")
    trials, pending = [], {}
    for cell in spec.cells():
        if any(str(cell[a]) not in levels for a, levels in (only or {}).items()):
            continue
        cid = cell_id(cell)
        reason = spec.pending_reason(cell)
        if reason:
            pending[cid] = reason
            continue
        check_method_keys(spec, cell, cid, _merge(base, spec.cell_values(cell, profile)).get("method", "supervised"),
                          profile)
        per_domain = any((spec.level(a, l) or {}).get("per_domain") for a, l in cell.items())
        groups = [[d] for d in spec.domains] if per_domain else [spec.domains]
        for seed in seed_list(spec, seeds, profile):
            for split_seed in ([seed] if splits == "same" else splits):
                for keys in groups:
                    values = _merge(base, _substitute_other(spec.cell_values(cell, profile), keys, spec.domains,
                                                            dmap_table, spec.path, cid))
                    values = _merge(values, {
                        "data": {"domains": [dmap_table[k] for k in keys], "split_seed": split_seed},
                        "train": {"seed": seed, "progress": False}})
                    values = _merge(values, overrides or {})
                    try:
                        cfg = build_config(values, f"{spec.path} cell {cid}")
                        config = to_dict(cfg)
                        renamed = _rename_sources(config, prof.get("sources") or {})
                        if renamed != config:   # defaults name sources too, so after the build
                            cfg = build_config(renamed, f"{spec.path} cell {cid}")
                            config = to_dict(cfg)
                    except ConfigError as exc:
                        raise SpecError(str(exc)) from None
                    from unisemi.config import config_hash
                    chash = config_hash(cfg)
                    key = trial_key(spec, cid, seed, split_seed, keys, profile, config)
                    trials.append(Trial(key=key, cell=dict(cell), cell_id=cid, seed=seed,
                                        split_seed=split_seed, domain_keys=tuple(keys),
                                        domain_map={dmap_table[k]: k for k in keys},
                                        config=config, config_hash=chash))
    if not trials and not pending:
        raise SpecError(f"{spec.path}: empty grid (no cells)")
    return trials, pending
