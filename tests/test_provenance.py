"""Every row records the code that ran: the git revision and a hash of the uncommitted diff, taken
where the run was launched, also when the job upload leaves `.git` behind."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_spec
from unisemi.ablation import provenance, submit

ROOT = Path(__file__).resolve().parents[1]


def _git(root, *args) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root,
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path):
    if not shutil.which("git"):
        pytest.skip("git is not installed")
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    (root / "a.py").write_text("x = 1\n")
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (root / "ablations").mkdir()
    (root / "ablations" / "run.py").write_text("")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "one")
    return root


def test_a_clean_checkout_is_its_revision_and_a_dirty_one_adds_the_hash_of_its_diff(checkout):
    head = _git(checkout, "rev-parse", "--short=12", "HEAD")
    assert provenance.from_git(checkout) == head
    (checkout / "a.py").write_text("x = 2\n")
    diff = subprocess.run(["git", "diff", "HEAD", "--binary"], cwd=checkout, capture_output=True).stdout
    dirty = provenance.from_git(checkout)
    assert dirty == f"{head}-dirty-{hashlib.sha256(diff).hexdigest()[:12]}"
    (checkout / "a.py").write_text("x = 3\n")                    # another change: another hash
    other = provenance.from_git(checkout)
    assert other.startswith(f"{head}-dirty-") and other != dirty
    (checkout / "a.py").write_text("x = 2\n")                    # the same change again: the same hash
    assert provenance.from_git(checkout) == dirty
    _git(checkout, "add", "a.py")                                 # staged counts as uncommitted too
    assert provenance.from_git(checkout) == dirty
    (checkout / "untracked.txt").write_text("results, notes")     # untracked files are not the code's
    assert provenance.from_git(checkout) == dirty
    _git(checkout, "commit", "-q", "-m", "two")
    assert provenance.from_git(checkout) == _git(checkout, "rev-parse", "--short=12", "HEAD") != head


def test_a_copy_without_git_takes_the_launch_record_or_refuses_in_one_line(checkout, tmp_path):
    copy = tmp_path / "upload"
    shutil.copytree(checkout, copy, ignore=shutil.ignore_patterns(".git"))
    assert provenance.from_git(copy) is None
    rev = provenance.from_git(checkout)
    assert provenance.git_revision(copy, env={provenance.ENV: rev}) == rev
    with pytest.raises(provenance.ProvenanceError) as err:
        provenance.git_revision(copy, env={})
    assert str(err.value).startswith(f"{copy} is a copy of the source tree without .git")
    assert "python -m unisemi submit" in str(err.value) and "\n" not in str(err.value)
    # the checkout's own git wins over a stale variable: it is the code that runs
    assert provenance.git_revision(checkout, env={provenance.ENV: "stale"}) == rev
    # an installed package outside any source tree has no revision to give
    plain = tmp_path / "site-packages"
    plain.mkdir()
    assert provenance.git_revision(plain, env={}) == provenance.UNKNOWN


def test_a_checkout_another_user_owns_still_answers_and_a_broken_git_is_refused(checkout, tmp_path):
    rev = provenance.from_git(checkout)
    if os.geteuid() == 0:                      # as root: hand the checkout to nobody, as in a CI container
        subprocess.run(["chown", "-R", "nobody", str(checkout)], check=True)
        refused = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True, text=True)
        assert refused.returncode != 0 and "dubious ownership" in refused.stderr      # what plain git does
        assert provenance.git_revision(checkout, env={}) == rev
    broken = tmp_path / "broken"
    (broken / ".git").mkdir(parents=True)      # a .git git cannot read (an interrupted copy)
    with pytest.raises(provenance.ProvenanceError, match=r"git cannot tell which revision this checkout is "
                                                         r"\(fatal: not a git repository"):
        provenance.git_revision(broken, env={})
    assert provenance.git_revision(broken, env={provenance.ENV: "abc"}) == "abc"


def test_submit_hands_the_revision_to_the_job_and_keeps_every_other_option(checkout, tmp_path):
    rev = provenance.from_git(checkout)
    argv = ["--address", "http://127.0.0.1:8265", "--working-dir", str(checkout), "--no-wait",
            "--runtime-env-json", json.dumps({"env_vars": {"A": "1"}, "pip": ["x"]}),
            "--", "python", "ablations/run.py", "table6", "--address", "auto"]
    cmd, show = submit.build_command(argv)
    cut = cmd.index("--runtime-env-json")
    assert cmd[:cut] == ["ray", "job", "submit", "--address", "http://127.0.0.1:8265", "--no-wait",
                         "--working-dir", str(checkout)]
    assert json.loads(cmd[cut + 1]) == {"env_vars": {"A": "1", "UNISEMI_GIT_REV": rev}, "pip": ["x"]}
    assert cmd[cut + 2:] == ["--", "python", "ablations/run.py", "table6", "--address", "auto"]
    assert show is False
    env_file = tmp_path / "env.yaml"
    env_file.write_text("env_vars: {B: '2'}\nworking_dir: ignored-by-ray-job-submit\n")
    cmd, show = submit.build_command(["--print", "--runtime-env", str(env_file), "--working-dir", str(checkout),
                                      "--", "echo"])
    assert show and json.loads(cmd[cmd.index("--runtime-env-json") + 1])["env_vars"] == {"B": "2", "UNISEMI_GIT_REV": rev}
    for bad, message in (
            (["--working-dir", str(tmp_path), "--", "echo"], f"--working-dir {tmp_path}: not a git checkout"),
            (["--working-dir", str(checkout), "echo"], "expected `-- ENTRYPOINT`"),
            (["--working-dir", str(checkout), "--"], "nothing to run after `--`"),
            (["--working-dir", str(checkout), "--runtime-env-json", "{x", "--", "echo"], "--runtime-env-json: not JSON")):
        with pytest.raises(submit.SubmitError, match=message.replace("(", r"\(").replace("[", r"\[")):
            submit.build_command(bad)


@pytest.mark.slow
def test_rows_of_a_run_from_a_copy_without_git_carry_the_launch_checkouts_revision(tmp_path):
    """What a `ray job submit --working-dir .` job sees: the checkout's files without .git, and
    the revision `python -m unisemi submit` recorded where it was launched."""
    copy = tmp_path / "upload"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", "results", "runs", "__pycache__", "*.egg-info"))
    rev = provenance.from_git(ROOT)
    if rev is None:
        pytest.skip(f"{ROOT} is not a git checkout")
    spec = tiny_spec(tmp_path / "specs", cells=("a",), seeds=1, baseline=False)
    cmd = [sys.executable, str(copy / "ablations" / "run.py"), str(spec), "--results", str(tmp_path / "results")]
    env = {k: v for k, v in os.environ.items() if k != provenance.ENV}
    refused = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=copy)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1].startswith(f"error: {copy} is a copy of the source tree without .git")
    ran = subprocess.run(cmd, env={**env, provenance.ENV: rev}, capture_output=True, text=True, timeout=400, cwd=copy)
    assert ran.returncode == 0, ran.stderr[-3000:]
    import pandas as pd
    rows = pd.read_parquet(tmp_path / "results" / "rows")
    assert len(rows) == 2 and set(rows["git_rev"]) == {rev}
