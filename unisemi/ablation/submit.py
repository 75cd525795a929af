"""`python -m unisemi submit [ray job submit options] -- ENTRYPOINT`: `ray job submit` that keeps
the run's provenance.

A job's working directory is uploaded without `.git`, so on the cluster the run cannot ask git
which code it is. This wrapper asks git here, in the checkout being uploaded (`--working-dir`,
default `.`), and hands the answer to the job as `UNISEMI_GIT_REV` in its runtime environment
(merged into `--runtime-env-json` / `--runtime-env` if given); every row of the run records it
(provenance.py). Everything else goes to `ray job submit` unchanged. `--print` shows the command
instead of running it.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

from unisemi.ablation.provenance import ENV, from_git


class SubmitError(ValueError):
    """A submit request that cannot keep its provenance; one line."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m unisemi submit", allow_abbrev=False,
        description="ray job submit, with the launching checkout's git revision and diff hash handed to "
                    "the job (UNISEMI_GIT_REV). Options not listed here go to ray job submit as they are.",
        usage="python -m unisemi submit [--address URL] [--working-dir DIR] [ray job submit options] "
              "-- ENTRYPOINT ...")
    p.add_argument("--working-dir", default=".", help="the checkout to upload (default: .)")
    p.add_argument("--runtime-env-json", default=None, help="as for ray job submit; UNISEMI_GIT_REV is added")
    p.add_argument("--runtime-env", default=None, help="a runtime env YAML, as for ray job submit; merged")
    p.add_argument("--print", action="store_true", dest="show", help="print the ray command, do not run it")
    return p


def _runtime_env(args) -> dict:
    if args.runtime_env_json and args.runtime_env:
        raise SubmitError("pass --runtime-env-json or --runtime-env, not both")
    if args.runtime_env_json:
        try:
            env = json.loads(args.runtime_env_json)
        except json.JSONDecodeError as exc:
            raise SubmitError(f"--runtime-env-json: not JSON ({exc.msg} at column {exc.colno})") from None
        where = "--runtime-env-json"
    elif args.runtime_env:
        import yaml
        try:
            env = yaml.safe_load(Path(args.runtime_env).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise SubmitError(f"--runtime-env {args.runtime_env}: cannot be read as YAML ({exc})") from None
        where = f"--runtime-env {args.runtime_env}"
    else:
        return {}
    if not isinstance(env, dict) or not isinstance(env.get("env_vars", {}), dict):
        raise SubmitError(f"{where}: expected a mapping whose env_vars is a mapping")
    return env


def build_command(argv: list[str]) -> tuple[list[str], bool]:
    """The `ray job submit` argv for `argv` (this command's arguments), and whether to only print it."""
    if "--" not in argv:
        raise SubmitError("expected `-- ENTRYPOINT` after the options, e.g. "
                          "python -m unisemi submit -- python ablations/run.py table6 --address auto")
    cut = argv.index("--")
    args, passthrough = _parser().parse_known_args(argv[:cut])
    entrypoint = argv[cut + 1:]
    if not entrypoint:
        raise SubmitError("nothing to run after `--`")
    root = Path(args.working_dir)
    rev = from_git(root)
    if rev is None:
        raise SubmitError(f"--working-dir {root}: not a git checkout (expected the folder holding .git, "
                          f"so that the rows can record which code ran)")
    env = _runtime_env(args)
    env["env_vars"] = {**env.get("env_vars", {}), ENV: rev}
    cmd = ["ray", "job", "submit", *passthrough, "--working-dir", str(root),
           "--runtime-env-json", json.dumps(env, sort_keys=True), "--", *entrypoint]
    return cmd, args.show


def main(argv: list[str]) -> int:
    if argv in (["-h"], ["--help"]):
        _parser().print_help()
        return 0
    try:
        cmd, show = build_command(argv)
    except SubmitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{ENV}={json.loads(cmd[cmd.index('--runtime-env-json') + 1])['env_vars'][ENV]}", file=sys.stderr)
    if show:
        print(shlex.join(cmd))
        return 0
    try:
        return subprocess.run(cmd).returncode
    except FileNotFoundError:
        print("error: the `ray` command is not on the PATH (pip install 'unisemi[cluster]')", file=sys.stderr)
        return 2
