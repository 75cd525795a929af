"""Rows of a table written through the real store API, without training: every trial of an
expansion gets evaluations at the given iterations, with values that follow a known rule, so the
report tests can compute each expected number by hand."""
import json

from unisemi.ablation.store import TableStore

CLASSES = ["road", "building", "car", "person", "sky"]


def trial_value(index: int, seed: int, iteration: int, last: int) -> float:
    """mIoU of a trial: 40 + 2 per cell index + 1 per seed, rising linearly to it by `last`."""
    return (40.0 + 2.0 * index + seed) * iteration / last


def class_ious(index: int, seed: int) -> list:
    """IoU per class: class j of cell `index` at seed s is 10 j + index + s; 'sky' is absent (null)
    in the cells with an odd index, so a mean over trials must skip it."""
    return [10.0 * j + index + seed if not (name == "sky" and index % 2) else None
            for j, name in enumerate(CLASSES)]


def write_rows(results, spec, trials, iterations=(3, 6), wall_per_eval=2.0, finished=True, skip=(),
               value=None, profile="laptop", git_rev="abc123"):
    """Store every trial of `trials` (but those whose key is in `skip`) as the runner does;
    returns the store. A trial's device-seconds are wall_per_eval x its evaluations. `value(cell
    id, seed)` gives a trial's final mIoU in place of trial_value's rule (reached linearly too)."""
    store = TableStore(results, spec.suite, spec.name, log=lambda *a: None)
    cells = [",".join(f"{k}={v}" for k, v in c.items()) for c in spec.cells()]
    for t in trials:
        if t.key in skip:
            continue
        index = cells.index(t.cell_id)
        rows = []
        for i, it in enumerate(iterations):
            wall = wall_per_eval * (i + 1)
            for domain, dkey in t.domain_map.items():
                rows.append(dict(
                    run_id="r1", suite=spec.suite, table=spec.name, profile=profile, trial=t.key,
                    cell=t.cell_id, cell_json=json.dumps(t.cell, sort_keys=True), seed=t.seed,
                    split_seed=t.split_seed, split_id=f"{domain}/n8/s{t.split_seed}", n_labelled=8,
                    domain=domain, domain_key=dkey, iteration=it, resumed_from=0, is_final=False,
                    is_best=False, status="ok", miou=(trial_value(index, t.seed, it, iterations[-1]) if value is None
                          else value(t.cell_id, t.seed) * it / iterations[-1]),
                    pixel_acc=80.0, class_names=CLASSES, class_iou=class_ious(index, t.seed),
                    loss_json="{}", wall_s=wall, launch_s=0.1 * wall, setup_s=0.1 * wall,
                    data_s=0.2 * wall, train_s=0.5 * wall, eval_s=0.1 * wall, device_hours=wall / 3600,
                    device="1x cpu", workers=0, git_rev=git_rev, config_hash=t.config_hash,
                    config_json=json.dumps(t.config, sort_keys=True),
                    time_utc=f"2026-12-01T10:00:{i:02d}+00:00"))
        store.merge(t.key, rows)
        if finished:
            store.finalize(t.key)
    return store


def html_tables(html: str) -> dict:
    """{table id: [[cell text, ...] per row]} of a page, parsed with the standard library."""
    from html.parser import HTMLParser

    class Tables(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tables, self.current, self.row, self.cell = {}, None, None, None

        def handle_starttag(self, tag, attrs):
            if tag == "table":
                self.current = self.tables.setdefault(dict(attrs).get("id", ""), [])
            elif tag == "tr" and self.current is not None:
                self.row = []
                self.current.append(self.row)
            elif tag in ("td", "th") and self.row is not None:
                self.cell = []

        def handle_endtag(self, tag):
            if tag in ("td", "th") and self.cell is not None:
                self.row.append(" ".join("".join(self.cell).split()))
                self.cell = None
            elif tag == "table":
                self.current = self.row = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell.append(data)

    parser = Tables()
    parser.feed(html)
    return parser.tables
