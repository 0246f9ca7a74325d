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


# ------------------------------------------------------------------------------------ the confirmatory study
CONFIRM = STUDY / "confirm"


def _confirm_value(row: dict[str, str], measure: str) -> float | None:
    return None if row[measure] == "" else float(row[measure])


def test_confirm_rows_are_their_runs_scores_json() -> None:
    """confirm.csv (stage 1) and confirm_segmentation.csv (stage 3): each row is its run's committed scores file."""
    table = rows(CONFIRM / "confirm.csv")
    assert len(table) == 7 * 8 * 2  # 7 arms, 8 seeds, both thresholds
    for row in table:
        scores = json.loads(
            (CONFIRM / "runs" / row["arm"].replace("/", "_") / f"seed{row['seed']}" / "scores.json").read_text()
        )
        val = row["threshold"] == "val_chosen"
        assert float(row["miou"]) == pytest.approx(scores["val_chosen" if val else "configured"], abs=1e-3), row
        assert float(row["bg_threshold"]) == scores["val_chosen_threshold" if val else "bg_threshold"], row
        confusion = scores["context_confusion_val_chosen" if val else "context_confusion"]
        assert float(row["context_confusion"]) == pytest.approx(confusion, abs=1e-9), row
        last = (scores.get("ird") or {}).get("last_steps") or {}
        for measure in ("error_precision", "error_recall", "correct_dropped", "inconsistent_salient"):
            assert _confirm_value(row, measure) == (None if measure not in last else pytest.approx(last[measure])), row
        assert (row["collapse_step"] != "") == (scores["collapse_step"] is not None), row
    segmentation = rows(CONFIRM / "confirm_segmentation.csv")
    assert len(segmentation) == 5 * 8
    for row in segmentation:
        folder = row["setting"].replace("@", "_")
        score = json.loads(
            (CONFIRM / "runs" / "segmentation" / folder / f"seed{row['seed']}" / "score.json").read_text()
        )
        assert float(row["miou"]) == pytest.approx(score["miou"], abs=1e-3), row


def _sign_flip_p(values: np.ndarray, direction: int | None) -> float:
    """All 2^n sign assignments, counted: the share at least as extreme as the observed mean."""
    import itertools

    observed = values.sum()
    sums = np.array([(values * signs).sum() for signs in itertools.product((1, -1), repeat=len(values))])
    if direction is None:
        return float(np.mean(np.abs(sums) >= abs(observed) - 1e-12))
    return float(np.mean(direction * sums >= direction * observed - 1e-12))


def _holm(ps: list[float]) -> list[float]:
    """Holm's step-down adjustment, written out: the k-th smallest p times (m - k), running maximum, capped at 1."""
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    adjusted, running = [0.0] * len(ps), 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - k) * ps[i]))
        adjusted[i] = running
    return adjusted


def test_confirm_claims_recomputed_from_the_plan_and_the_tables() -> None:
    """Each claim of confirm_claims.csv: its per-seed differences from the tables as the committed plan names them,
    its t interval, exact sign-flip p, Holm within its family and verdict, each by a formula written here."""
    import yaml

    plan = yaml.safe_load((CONFIRM / "plan.yaml").read_text())
    value: dict[tuple, float] = {}
    for row in rows(CONFIRM / "confirm.csv"):
        for measure in ("miou", "context_confusion"):
            value[(row["arm"], measure, row["threshold"], int(row["seed"]))] = float(row[measure])
    for row in rows(CONFIRM / "confirm_segmentation.csv"):
        value[(row["setting"], "val_miou", None, int(row["seed"]))] = float(row["miou"])
    committed = {c["claim"]: c for c in rows(CONFIRM / "confirm_claims.csv")}
    assert len(committed) == sum(len(v) for v in plan["claims"].values()) == 12
    for family, planned in plan["claims"].items():
        ps, opposite = [], []
        for entry in planned:
            claim = committed[entry["name"]]
            assert claim["family"] == family
            a, b, measure, threshold = entry["a"], entry["b"], entry["measure"], entry.get("threshold")
            differences = np.array(
                [value[(a, measure, threshold, s)] - value[(b, measure, threshold, s)] for s in plan["seeds"]]
            )
            assert list(per_seed(claim)) == plan["seeds"]
            assert list(per_seed(claim).values()) == pytest.approx(differences, abs=1e-3), claim["claim"]
            mean = differences.mean()
            half = float(stats.t.ppf(0.975, len(differences) - 1)) * differences.std(ddof=1) / math.sqrt(8)
            assert (float(claim["mean"]), float(claim["low"]), float(claim["high"])) == pytest.approx(
                (mean, mean - half, mean + half), abs=1e-3
            )
            direction = entry["direction"]
            assert claim["direction"] == {1: "+", -1: "-", None: ""}[direction]
            ps.append(_sign_flip_p(differences, direction))
            opposite.append(_sign_flip_p(differences, None if direction is None else -direction))
            assert float(claim["p"]) == pytest.approx(ps[-1], abs=1e-6), claim["claim"]
        for entry, p, q in zip(planned, _holm(ps), _holm(opposite), strict=True):
            claim = committed[entry["name"]]
            assert float(claim["p_holm"]) == pytest.approx(p, abs=1e-6), claim["claim"]
            if p <= 0.05:
                expected = "holds" if entry["direction"] is not None else "differs"
            elif entry["direction"] is not None and q <= 0.05:
                expected = "contradicted"
            else:
                expected = "not significant"
            assert claim["verdict"] == expected, claim["claim"]


def test_the_results_pages_confirm_rows_are_the_committed_claims() -> None:
    """The confirmatory table of the results page (and so the README's): claim, n, interval, p (Holm), verdict."""
    from epspp.study.stats import signed

    committed = {c["claim"]: c for c in rows(CONFIRM / "confirm_claims.csv")}
    quoted = 0
    for line in results_section("Results").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] in committed and cells[1] in ("primary", "secondary"):  # the exploratory tables have a regime
            claim = committed[cells[0]]
            digits = 1 if "miou" in claim["threshold"] else 3
            mean, low, high = (signed(float(claim[k]), digits) for k in ("mean", "low", "high"))
            interval = f"{mean} [{low}, {high}]"
            assert cells[1:5] == [claim["family"], claim["n"], interval, f"{float(claim['p_holm']):.3g}"], line
            assert cells[5].startswith(f"**{claim['verdict']}**"), line
            quoted += 1
    assert quoted == len(committed), "the results page quotes every claim of the confirmatory study"
