"""The command line, end to end in a subprocess: what a user types and what they read."""
import subprocess
import sys

import pytest


def run(*args):
    return subprocess.run([sys.executable, "-m", "unisemi", *args], capture_output=True, text=True, timeout=600)


def test_bad_config_key_is_one_line_error_without_traceback():
    out = run("train", "--config", "supervised_city", "--set", "train.iteratons=3")
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and "supervised_city.yaml: unknown key 'train.iteratons' " \
        "(did you mean 'train.iterations'?)" in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_unknown_domain_is_one_line_error():
    out = run("train", "--set", "data.domains=[mars]")
    assert out.returncode == 2 and "'mars' is not valid" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_train_then_eval_prints_per_class_iou(tmp_path):
    out = run("train", "--config", "supervised_city", "--set", "train.iterations=30",
              "--set", "train.eval_every=15", "--set", "data.val_images=16",
              "--set", f"train.out_dir={tmp_path}", "--set", "train.progress=false")
    assert out.returncode == 0, out.stderr
    assert "city: mIoU" in out.stdout and "road" in out.stdout and "bicycle" in out.stdout
    ev = run("eval", "--checkpoint", str(tmp_path))
    assert ev.returncode == 0, ev.stderr
    final_line = [l for l in out.stdout.splitlines() if "city: mIoU" in l][0]
    assert final_line in ev.stdout  # the stored model re-evaluates to the same numbers
