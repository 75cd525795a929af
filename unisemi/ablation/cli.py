"""`python ablations/run.py TABLE [options]`: run a paper table's grid and write its outputs."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unisemi.ablation.cost import CostError
from unisemi.ablation.ledger import ConfigChanged
from unisemi.ablation.lock import LockHeld
from unisemi.ablation.preflight import PreflightError, RayUnreachable
from unisemi.ablation.provenance import ProvenanceError
from unisemi.ablation.runner import RunnerError
from unisemi.ablation.site import ReportError
from unisemi.ablation.spec import NOT_RUN, SpecError, all_specs, expand, load_spec, parse_only
from unisemi.ablation.storage import StorageError
from unisemi.ablation.store import StoreError
from unisemi.ablation.trackers import TrackerError, add_tracker_option
from unisemi.config import ConfigError, parse_override, _merge

# Exit codes (README "Exit codes"). 0: every trial of the table has its final row (a trial that
# diverged has one: a non-finite loss is a result, counted in the footnotes). 2: the request was
# refused before anything ran (bad input, a preflight problem). 3: trials errored after their
# retries or have no final row; the rows, table and page were still written, and --resume
# retries exactly those. 4: the Ray cluster could not be joined (address, token).
EXIT_OK, EXIT_REFUSED, EXIT_TRIALS_FAILED, EXIT_NO_CLUSTER = 0, 2, 3, 4


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python ablations/run.py",
        description="Run every cell x seed of an ablation table with Ray Tune, store each evaluation "
                    "in Parquet, and write table.md/.tex/.csv and a plot beside the paper's numbers.")
    p.add_argument("table", nargs="?", help="tableN (= contrastive/tableN), SUITE/tableN, or a spec path")
    p.add_argument("--list", action="store_true", help="list every table with its title and status")
    p.add_argument("--migrate-results", action="store_true",
                   help="move a --results folder of the earlier layout (suite=*/table=* at its top) into "
                        "rows/, one trial file at a time, then exit")
    p.add_argument("--profile", default="laptop", choices=("laptop", "paper"))
    p.add_argument("--seeds", type=int, default=None, help="seeds per cell (default: the spec's)")
    p.add_argument("--dry-run", action="store_true", help="print trials, resources and cost, then exit")
    p.add_argument("--recipe", action="store_true",
                   help="with --profile paper: print every cell's resolved recipe beside the paper's card "
                        "(same / departure / DIFFERS), then exit (1 if anything DIFFERS)")
    p.add_argument("--resume", action="store_true", help="run only the trials not yet stored")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite the outputs and the table's HTML page from stored results")
    p.add_argument("--address", default=None, help="join a running Ray cluster ('auto')")
    p.add_argument("--workers-per-trial", type=int, default=0,
                   help="0 = fit inside the trial (laptop); N >= 1 = a TorchTrainer with N DDP workers")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial (or per worker)")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per trial (or per worker)")
    p.add_argument("--max-concurrent", type=int, default=None, help="trials at once (default: as fit)")
    p.add_argument("--max-failures", type=int, default=2, help="retries of a trial after an error of the code")
    p.add_argument("--max-preemptions", type=int, default=10,
                   help="further retries of a trial after losing its node (spot reclaim, a dead worker)")
    p.add_argument("--results", default="results", help="results directory (default: ./results)")
    p.add_argument("--storage", default=None, metavar="URI",
                   help="Ray's experiment state and trial checkpoints: s3://..., gs://... or a folder mounted "
                        "on every node (default: $UNISEMI_STORAGE, else RESULTS/ray)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key in every trial, e.g. train.iterations=50")
    p.add_argument("--only", action="append", default=[], metavar="AXIS=LEVEL",
                   help="run only the cells with these levels (repeatable), e.g. N=N100")
    add_tracker_option(p)
    return p



def list_tables(out=print) -> None:
    for suite, table, path in all_specs():
        try:
            spec = load_spec(str(path))
            trials, pending = expand(spec, "laptop", 1)
            # paper-only rows and `not_run:` cells are never run: not "pending" on a method
            reference = sum(r.startswith(("paper-only", NOT_RUN)) for r in pending.values())
            cells = len(spec.cells()) - reference
            waiting = len(pending) - reference
            status = "ready" if not waiting else (
                "pending" if waiting == cells else f"partial: {cells - waiting}/{cells} cells runnable")
            if reference:
                status += f" (+{reference} paper-only or not runnable)"
            out(f"{suite}/{table:8s} {status:28s} {spec.title}")
        except (SpecError, ConfigError) as exc:
            out(f"{suite}/{table:8s} {'invalid':28s} {exc}")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def outputs_dir(results: str, spec) -> Path:
    return Path(results) / "tables" / spec.suite / spec.name


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except (SpecError, ConfigError, CostError, RunnerError, StoreError, LockHeld, ConfigChanged,
            TrackerError, ReportError, StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except (PreflightError, ProvenanceError) as exc:        # one "error:" line per problem
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except RayUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NO_CLUSTER


def unfinished(res: dict) -> list[str]:
    """'cell seed N' of each trial of this run that errored after its retries or has no final row."""
    from unisemi.ablation.rows import in_expansion
    fin = in_expansion(res["store"].final_rows(), res["trials"])
    errored = set(fin.loc[fin["status"] == "error", "trial"]) if len(fin) else set()
    bad = errored | set(res["missing"])
    return [f"{t.cell_id} seed {t.seed}" for t in res["trials"] if t.key in bad]


def _finish(failed: list[str]) -> int:
    if not failed:
        return EXIT_OK
    shown = ", ".join(failed[:3]) + (f" and {len(failed) - 3} more" if len(failed) > 3 else "")
    print(f"error: {len(failed)} trial(s) errored or have no final row ({shown}); the rows, table and page "
          f"hold what finished; --resume retries exactly these", file=sys.stderr)
    return EXIT_TRIALS_FAILED


def _main(args) -> int:
    from unisemi.ablation.report import write_outputs
    from unisemi.ablation.rows import describe_set_aside, set_aside
    from unisemi.ablation.runner import dry_run, run_table
    from unisemi.ablation.store import TableStore, check_results_dir

    if args.list:
        list_tables()
        return 0
    if args.migrate_results:
        from unisemi.ablation.migrate import migrate
        migrate(args.results)
        return 0
    if not args.table:
        print("error: name a table (e.g. table6) or pass --list", file=sys.stderr)
        return 2
    if args.seeds is not None and args.seeds < 1:
        raise SpecError(f"--seeds {args.seeds}: expected >= 1")
    spec = load_spec(args.table)
    print(f"{args.table} = {spec.suite}/{spec.name}: {spec.title}")
    overrides = {}
    for text in args.set:
        overrides = _merge(overrides, parse_override(text))
    only = parse_only(args.only)
    if args.recipe or (args.profile == "paper" and not args.report_only):
        from unisemi.ablation.recipe import recipe_gate
        status = recipe_gate(spec, args, overrides, only)
        if status is not None:
            return status
    if args.dry_run:       # only reads: the results folder need not be writable
        check_results_dir(args.results, writable=False)
        store = TableStore(args.results, spec.suite, spec.name, log=_stderr)
        print(dry_run(spec, store, profile=args.profile, seeds=args.seeds, overrides=overrides, only=only,
                      resume=args.resume, workers=args.workers_per_trial, cpus=args.cpus_per_trial,
                      gpus=args.gpus_per_trial))
        return 0
    trials, pending = expand(spec, args.profile, args.seeds, overrides, only)
    out_dir = outputs_dir(args.results, spec)
    # a run or --report-only writes rows, tables and set-aside files
    check_results_dir(args.results, writable=True)
    store = TableStore(args.results, spec.suite, spec.name, log=_stderr)
    if not args.report_only:
        res = run_table(spec, profile=args.profile, seeds=args.seeds, results_dir=args.results,
                        resume=args.resume, address=args.address, workers_per_trial=args.workers_per_trial,
                        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                        max_concurrent=args.max_concurrent, max_failures=args.max_failures,
                        max_preemptions=args.max_preemptions,
                        overrides=overrides, only=only, trackers=args.tracker, storage=args.storage)
        if res["missing"]:
            print(f"warning: {len(res['missing'])} trial(s) have no final row; rerun with --resume",
                  file=sys.stderr)
    elif not store.exists():
        raise SpecError(f"--report-only: nothing stored for {spec.suite}/{spec.name} under {store.dir}")
    df = store.read()
    failed = [] if args.report_only else unfinished(res)
    ignored = describe_set_aside(set_aside(df, trials, args.profile), lead=f"{store.dir}: not in this table")
    if ignored:
        _stderr(ignored)
    paths = write_outputs(spec, df, out_dir, pending, args.profile, trials=trials)
    print((out_dir / "table.md").read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    from unisemi.ablation import site
    if not len(df):                    # nothing ran (every cell pending): no page, as in the index
        return _finish(failed)
    site.write_page(args.results, spec.suite, spec.name, df, trials, pending, args.profile, spec)
    print(f"report: {site.page_path(args.results, spec.suite, spec.name)} "
          f"(all tables: {site.write_index(args.results, log=_stderr)})")
    return _finish(failed)
