"""Every number the results page (docs/results.md) and the README quote can be recomputed from committed files
(issue 26): the studies' tables from each run's scores.json, each claim's per-seed differences from the tables, its
95% t interval and verdict by an independent formula, and the results page's claim rows and demo numbers from those
files; the README's results table is the results page's."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

REPO = Path(__file__).resolve().parents[2]
STUDY = REPO / "docs" / "study"
#: table, claims, where the runs are, the column that names a run's saliency folder (None: from error type and rate)
STUDIES = {
    "study": (STUDY / "study.csv", STUDY / "study_claims.csv", STUDY / "runs"),
    "readings": (
        STUDY / "readings" / "readings.csv",
        STUDY / "readings" / "readings_claims.csv",
        STUDY / "readings" / "runs",
    ),
    "labeled_fraction": (STUDY / "labeled_fraction.csv", STUDY / "labeled_fraction_claims.csv", STUDY / "runs"),
}
DEMOS = {
    "pretrained": REPO / "docs" / "demo" / "report.json",
    "scratch": REPO / "docs" / "demo_scratch" / "report.json",
}


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def run_folder(runs: Path, row: dict[str, str]) -> Path:
    """The committed folder of the stage-1 run behind a row of study.csv or readings.csv."""
    method = row["method"]
    if "saliency" in row:
        saliency = row["saliency"]
    elif method == "cam" or float(row["rate"]) == 0:
        saliency = "clean"
    else:
        saliency = f"{row['error_type']}_{float(row['rate']):g}"
    run = Path(row["regime"]) / method.replace("/", "_") / saliency / f"seed{row['seed']}"
    found = [p / run for p in runs.iterdir() if (p / run).is_dir()]
    if len(found) > 1:  # the labelled-fraction study's stage-1 fits at clean saliency, on its own dataset
        fractions = STUDIES["labeled_fraction"][0]
        theirs = {f"data_{r['num_classes']}classes" for r in rows(fractions)} if fractions.is_file() else set()
        found = [f for f in found if f.relative_to(runs).parts[0] not in theirs]
    (folder,) = found
    return folder


@pytest.mark.parametrize("study", ["study", "readings"])
def test_every_table_row_is_its_runs_scores_json(study: str) -> None:
    table, _, runs = STUDIES[study]
    for row in rows(table):
        scores = json.loads((run_folder(runs, row) / "scores.json").read_text())
        key, threshold = (
            ("configured", "bg_threshold")
            if row["threshold"] == "configured"
            else ("val_chosen", "val_chosen_threshold")
        )
        assert float(row["miou"]) == pytest.approx(scores[key], abs=1e-3), row
        assert float(row["bg_threshold"]) == pytest.approx(scores[threshold]), row
        if row["threshold"] == "val_chosen":  # the val sweep's best, lowest on a tie: nothing chosen on train
            val = {float(t): m for t, m in scores["val_sweep"].items()}
            assert scores["val_chosen_threshold"] == min(t for t, m in val.items() if m == max(val.values()))
            assert scores["val_chosen"] == scores["train_sweep"][f"{scores['val_chosen_threshold']:g}"]
        collapsed = row["collapse_step"] != ""
        assert collapsed == (scores["collapse_step"] is not None), row


def test_labelled_fraction_rows_are_their_runs_score_json() -> None:
    table, _, runs = STUDIES["labeled_fraction"]
    for row in rows(table):
        name = row["setting"] if row["setting"].startswith("wsss") else f"{row['setting']}_{float(row['fraction']):g}"
        (score,) = runs.glob(f"*/{row['regime']}/segmentation/{name}/seed{row['seed']}/score.json")
        assert float(row["miou"]) == pytest.approx(json.loads(score.read_text())["miou"], abs=1e-3), row


def per_seed(claim: dict[str, str]) -> dict[int, float]:
    return {int(s): float(v) for s, v in (part.split(":") for part in claim["per_seed"].split(";"))}


@pytest.mark.parametrize("study", list(STUDIES))
def test_each_claims_interval_and_verdict_by_an_independent_formula(study: str) -> None:
    _, claims, _ = STUDIES[study]
    for claim in rows(claims):
        values = np.array(list(per_seed(claim).values()))
        assert int(claim["n"]) == len(values)
        mean = float(values.mean())
        assert float(claim["mean"]) == pytest.approx(mean, abs=2e-3), claim
        if len(values) < 2:
            assert claim["verdict"] in ("not significant", "not testable")
            continue
        half = float(stats.t.ppf(0.975, len(values) - 1)) * float(values.std(ddof=1)) / math.sqrt(len(values))
        low, high = mean - half, mean + half
        assert float(claim["low"]) == pytest.approx(low, abs=2e-3) and float(claim["high"]) == pytest.approx(
            high, abs=2e-3
        ), claim
        sign = {"+": 1, "-": -1, "": None}[claim["direction"]]
        if "collapsed" in claim["note"]:
            expected = "not testable"
        elif low <= 0 <= high:
            expected = "not significant"
        elif sign is None:
            expected = "differs"
        else:
            expected = "holds" if (low > 0) == (sign > 0) else "contradicted"
        assert claim["verdict"] == expected, claim


METHOD_CLAIMS = {
    "saliency fixes co-occurrence: EPS > CAM": ("eps", "cam"),
    "EPS++ > CAM": ("eps++", "cam"),
    "EPS++ > EPS": ("eps++", "eps"),
    "EPS++ (softmax reading) > EPS": ("eps++/softmax", "eps"),
    "PAMR helps IRD: EPS++ > EPS++ without PAMR": ("eps++", "eps++/no-pamr"),
    "normalized - softmax reading of B()": ("eps++", "eps++/softmax"),
}
THRESHOLD_OF = {"bg 0.2": "configured", "threshold chosen on val": "val_chosen"}


@pytest.mark.parametrize("study", ["study", "readings"])
def test_each_claims_per_seed_differences_come_from_the_table(study: str) -> None:
    table, claims, _ = STUDIES[study]
    value: dict[tuple, float] = {}
    for row in rows(table):
        point = (row["regime"], row["method"], row["threshold"], int(row["seed"]))
        if study == "study":
            point += (row["error_type"], float(row["rate"]))
        value[point] = float(row["miou"])
    checked = 0
    for claim in rows(claims):
        threshold = THRESHOLD_OF[claim["threshold"]]
        lost = re.match(r"EPS\+\+ loses less than EPS under (.+) ([\d.]+)$", claim["claim"])
        for seed, difference in per_seed(claim).items():
            if lost:
                error, rate = lost.group(1).replace(" ", "_"), float(lost.group(2))
                at = {m: (claim["regime"], m, threshold, seed, error) for m in ("eps++", "eps")}
                loss = {m: value[(*at[m], rate)] - value[(*at[m], 0.0)] for m in at}
                expected = loss["eps++"] - loss["eps"]
            else:
                a, b = METHOD_CLAIMS[claim["claim"]]
                at = (claim["regime"], threshold, seed)
                extra = ("missing_class", 0.0) if study == "study" else ()
                expected = value[(at[0], a, at[1], seed, *extra)] - value[(at[0], b, at[1], seed, *extra)]
            assert difference == pytest.approx(expected, abs=2e-3), claim
            checked += 1
    assert checked


FRACTION_CLAIMS = {
    "SSSS (EPS++ masks) > labelled-only": ("ssss", "labeled_only"),
    "SSSS (EPS masks) > labelled-only": ("ssss_eps", "labeled_only"),
    "SSSS (EPS++ masks) > WSSS (EPS++ masks)": ("ssss", "wsss"),
    "SSSS (EPS masks) > WSSS (EPS masks)": ("ssss_eps", "wsss_eps"),
}


def test_labelled_fraction_claims_per_seed_differences_come_from_the_table() -> None:
    table, claims, _ = STUDIES["labeled_fraction"]
    value = {(r["regime"], float(r["fraction"]), r["setting"], int(r["seed"])): float(r["miou"]) for r in rows(table)}
    checked = 0
    for claim in rows(claims):
        name, fraction = re.fullmatch(r"(.+), fraction ([\d.]+)", claim["claim"]).groups()
        a, b = FRACTION_CLAIMS[name]
        for seed, difference in per_seed(claim).items():
            at = (claim["regime"], float(fraction))
            assert difference == pytest.approx(value[(*at, a, seed)] - value[(*at, b, seed)], abs=2e-3), claim
            checked += 1
    assert checked


RESULTS_PAGE = REPO / "docs" / "results.md"


def results_section(title: str) -> str:
    """The H2 section ``title`` of the results page, up to the next H2 (or the page's end)."""
    text = RESULTS_PAGE.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 3)
    return text[start:] if end < 0 else text[start:end]


def test_the_results_pages_claim_rows_are_the_committed_claims() -> None:
    from epspp.study.stats import Estimate, interval_text

    quoted = 0
    for title, studies in (
        ("Results", ["readings"]),
        ("Studies: saliency errors and labelled fractions", ["study", "labeled_fraction"]),
    ):
        committed = {}  # the same claim can be in two studies: each section of the page quotes its own
        for study in studies:
            for claim in rows(STUDIES[study][1]):
                values = tuple(per_seed(claim).values())
                committed[(claim["claim"], claim["regime"], claim["threshold"])] = (
                    interval_text(Estimate(values)),
                    claim["verdict"],
                    len(values),
                )
        for line in results_section(title).splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 7 and (cells[0], cells[1], cells[2]) in committed:
                interval, verdict, n = committed[(cells[0], cells[1], cells[2])]
                assert cells[3] == str(n) and cells[4] == interval and cells[6].startswith(f"**{verdict}**"), line
                quoted += 1
    assert quoted >= 10, "the results page quotes the claims tables"


@pytest.mark.parametrize("regime", list(DEMOS))
def test_the_results_pages_demo_numbers_are_the_committed_report(regime: str) -> None:
    report = json.loads(DEMOS[regime].read_text())
    text = results_section("Results")
    assert report["regime"]["name"] == regime and report["regime"]["ird_threshold_maps"] == "normalized"
    for method, masks in report["pseudo_masks"].items():
        quoted = f"{masks['miou']:.1f} / {masks['chosen_bg_threshold_miou']:.1f} ({masks['chosen_bg_threshold']:g})"
        assert quoted in text, (regime, method, quoted)


def test_the_readmes_results_table_is_the_results_pages() -> None:
    """The README quotes one table of the results page: every row of it, word for word."""
    readme = (REPO / "README.md").read_text()
    start = readme.index("\n## Results\n")
    rows_quoted = [
        line for line in readme[start : readme.index("\n## ", start + 3)].splitlines() if line.startswith("|")
    ]
    assert len(rows_quoted) >= 5, "the README quotes a results table"
    page = results_section("Results").splitlines()
    for line in rows_quoted:
        assert line in page, line
