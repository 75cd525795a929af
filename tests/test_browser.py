"""The report as a browser shows it: headless Chromium (Debian's `chromium`) renders the table6
page and the index from a stored table6 (rows written through the store API, one trial never
finished). Checked: the screenshot is not blank, the table's values from table.csv are in the
rendered DOM's text, and every image loaded (the page's load script writes each image's natural
width into the DOM). Skipped where Chromium is absent; .ci/run installs it."""
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from report_rows import html_tables, write_rows
from unisemi.ablation import site
from unisemi.ablation.spec import expand, load_spec

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: the browser check needs "
                                "Debian's chromium package (apt-get install -y chromium; .ci/run installs it)")
WINDOW = (1280, 4200)          # tall enough for the whole table6 page


@pytest.fixture(scope="module")
def table6(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    spec = load_spec("table6")
    trials, _ = expand(spec, "laptop")
    write_rows(root / "results", spec, trials, iterations=(250, 500), skip={trials[-1].key})
    site.build_site(root / "results", log=lambda *a: None)
    return root, root / "results"


def chromium(page, profile_dir, *args) -> str:
    """Load `page` in headless Chromium until its scripts have run; returns stdout (the DOM with
    --dump-dom). A fresh profile folder per call: two Chromiums never share one."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--user-data-dir={profile_dir}", "--virtual-time-budget=10000", *args, page.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"chromium exited {done.returncode}: {done.stderr[-2000:]}"
    return done.stdout


def image_widths(dom: str) -> list[int]:
    """The natural width the page's load script wrote on each <img>; -1 where it wrote none."""
    widths = []
    for tag in re.findall(r"<img\b[^>]*>", dom):
        found = re.search(r'data-natural-width="(\d+)"', tag)
        widths.append(int(found.group(1)) if found else -1)
    return widths


def test_the_table6_page_renders_with_its_values_and_every_image(table6, tmp_path):
    root, results = table6
    page = site.page_path(results, "contrastive", "table6")
    shot = tmp_path / "table6.png"
    chromium(page, tmp_path / "p1", f"--screenshot={shot}", f"--window-size={WINDOW[0]},{WINDOW[1]}")
    from PIL import Image
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (WINDOW[1], WINDOW[0])
    assert pixels.std() > 10, f"screenshot {shot} looks blank (grey-level std {pixels.std():.1f})"
    assert (pixels < 128).mean() > 0.005         # text, table rules and figures: dark pixels (a blank page: none)

    dom = chromium(page, tmp_path / "p2", "--dump-dom")
    rows = html_tables(dom)["results"][2:]
    shown = {r[0]: r[1:] for r in rows}
    csv = pd.read_csv(results / "tables" / "contrastive" / "table6" / "table.csv", dtype={"axis:lambda_contr": str})
    assert len(csv) == len(shown) == 7
    for line in csv.to_dict("records"):
        ours, paper, delta = shown[line["axis:lambda_contr"]]
        assert ours.startswith(f"{line['mean']:.1f}"), (line["cell"], ours)
        assert paper == f"{line['paper']:.1f}" and delta == f"{line['delta']:+.1f}"
    widths = image_widths(dom)
    # the laptop plot (each cell relative to its baseline), the absolute plot, and three figures
    sources = re.findall(r'<img src="[^"]*/([^"/]+)"', page.read_text())
    assert len(widths) == len(sources) == 5 and {"plot.png", "plot_absolute.png"} <= set(sources), sources
    assert all(w > 0 for w in widths), widths
    assert re.search(r'data-images-loaded="5/5"', dom)


def test_a_missing_figure_shows_as_not_loaded(table6, tmp_path):
    """The image check can fail: a page whose figure file is gone reads width 0 and says so."""
    root, results = table6
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    (site.assets_dir(copy, "contrastive", "table6") / "curves.png").unlink()
    dom = chromium(site.page_path(copy, "contrastive", "table6"), tmp_path / "p", "--dump-dom")
    assert sorted(image_widths(dom))[0] == 0
    assert "figure missing: table6/curves.png" in dom
    assert 'data-images-loaded="4/5"' in dom


def test_the_index_renders_the_tables_status_and_cost(table6, tmp_path):
    root, results = table6
    dom = chromium(site.report_root(results) / "index.html", tmp_path / "p", "--dump-dom")
    rows = html_tables(dom)["tables"]
    assert rows[1][:5] == ["contrastive/table6", "Effect of lambda_contr (Cityscapes 1/30)", "13 of 14 trials",
                           "13 / 14", "52.0"]
