"""The validation report's metrics are right, its errors name lines, and truth stays inside."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from nccid.accounts.models import AuditEvent
from nccid.research.cohort import ScopeError
from nccid.research.services import validate_predictions
from nccid.research.validation_report import (
    GroundTruth,
    PredictionError,
    Truth,
    auc_ci,
    delong_auc,
    evaluate,
    read_predictions,
    render_html,
)
from nccid.research.validation_report import roc_curve as our_roc


def synthetic_truth(n=300, seed=3):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.round(rng.normal(labels * 1.2, 1.0), 2)  # rounding makes ties, as real scores do
    patients = {f"NCCID-{i:016d}".translate(str.maketrans("0123456789", "ABCDEFGHIJ")): Truth(
        int(labels[i]), ("RTEST", "OTHER")[i % 2], ("Male", "Female")[i % 3 == 0],
        int(20 + i % 70), ("White", "Asian", "Black")[i % 3]) for i in range(n)}
    return GroundTruth(patients, {}), scores


def csv_of(truth, scores):
    return "pseudonym,score\n" + "".join(f"{p},{s}\n" for p, s in zip(truth.patients, scores, strict=True))


def test_auc_matches_scikit_learn_and_ci_is_sane():
    truth, scores = synthetic_truth()
    scored = read_predictions(csv_of(truth, scores), truth)
    auc, low, high = auc_ci(scored.scores, scored.labels)
    assert auc == pytest.approx(roc_auc_score(scored.labels, scored.scores), abs=1e-12)
    assert 0 <= low < auc < high <= 1 and high - low < 0.2
    # DeLong's standard error agrees with a bootstrap's to within 15%.
    rng = np.random.default_rng(0)
    boots = []
    for _ in range(400):
        idx = rng.integers(0, len(scores), len(scores))
        if len(set(scored.labels[idx])) == 2:
            boots.append(roc_auc_score(scored.labels[idx], scored.scores[idx]))
    _, var = delong_auc(scored.scores, scored.labels)
    assert np.sqrt(var) == pytest.approx(np.std(boots), rel=0.15)
    # A smaller sample gives a wider interval.
    _, low_small, high_small = auc_ci(scored.scores[:60], scored.labels[:60])
    assert high_small - low_small > high - low


def test_roc_points_match_scikit_learn():
    truth, scores = synthetic_truth(80)
    scored = read_predictions(csv_of(truth, scores), truth)
    fpr, tpr, _ = our_roc(scored.scores, scored.labels)
    sk_fpr, sk_tpr, _ = roc_curve(scored.labels, scored.scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)


def test_operating_points_and_subgroups():
    truth, scores = synthetic_truth()
    scored = read_predictions(csv_of(truth, scores), truth)
    report = evaluate(scored, truth, 0.5)
    predicted, y = scored.scores >= 0.5, scored.labels
    assert report.overall["sensitivity"][0] == pytest.approx((predicted & (y == 1)).sum() / (y == 1).sum())
    assert report.overall["specificity"][0] == pytest.approx((~predicted & (y == 0)).sum() / (y == 0).sum())
    youden = evaluate(scored, truth, "youden")
    j = youden.overall["sensitivity"][0] + youden.overall["specificity"][0]
    assert j >= report.overall["sensitivity"][0] + report.overall["specificity"][0]
    sites = dict(report.subgroups["Site"])
    assert set(sites) == {"RTEST", "OTHER"} and sum(m["n"] for m in sites.values()) == 300
    mask = np.array([t.site == "OTHER" for t in scored.truths])
    assert sites["OTHER"]["auc"][0] == pytest.approx(roc_auc_score(y[mask], scored.scores[mask]))
    assert {"Age band", "Sex", "Ethnicity"} <= set(report.subgroups)
    with pytest.raises(ValueError, match="youden"):
        evaluate(scored, truth, "best")


def test_small_subgroups_are_suppressed_and_html_is_self_contained():
    truth, scores = synthetic_truth(40)
    scored = read_predictions(csv_of(truth, scores), truth)
    report = evaluate(scored, truth, 0.5, min_group=25)
    bands = dict(report.subgroups["Age band"])
    assert any(m is None for m in bands.values())
    page = render_html(report)
    assert "suppressed: fewer than 25 cases" in page
    png = re.search(r'src="data:image/png;base64,([^"]+)"', page).group(1)
    assert base64.b64decode(png).startswith(b"\x89PNG")
    assert "http://" not in page and "https://" not in page
    assert not [p for p in truth.patients if p in page]  # no per-patient row, no pseudonym


def test_bad_predictions_are_reported_by_line_without_echoing_identifiers():
    truth, scores = synthetic_truth(10)
    ids = list(truth.patients)
    text = ("pseudonym,score\n"
            f"{ids[0]},0.3\n"
            f"{ids[0]},0.4\n"            # duplicate
            f"{ids[1]},high\n"           # not a number
            "9990000018,0.2\n"           # looks like an NHS number: must not be echoed
            f"{ids[2]},nan\n")
    with pytest.raises(PredictionError) as caught:
        read_predictions(text, truth)
    errors = caught.value.errors
    assert errors[0].startswith("line 3: duplicate ID") and "first given on line 2" in errors[0]
    assert errors[1].startswith("line 4: score 'high'")
    assert errors[2].startswith("line 6: score 'nan'")
    assert errors[3].startswith("line 5: unknown ID") and "9990000018" not in str(caught.value)
    with pytest.raises(PredictionError, match="line 1: the header"):
        read_predictions("id;value\n", truth)


def test_service_scores_validation_patients_and_refuses_training_ids(world, data_manager, researcher):
    validation = sorted(world.pseudonyms("validation"))
    status = {p["pseudonym"]: p["covid_status"] for p in world.patients}
    text = "pseudonym,score\n" + "".join(
        f"{p},{0.9 if status[p] == 'positive' else 0.1}\n" for p in validation)
    outcome = validate_predictions(data_manager, text, "youden", world.source())
    assert outcome.report.overall["auc"][0] == 1.0
    assert outcome.report.coverage == (len(validation), len(validation))
    assert "<html" in outcome.html and not [p for p in validation if p in outcome.html]
    event = AuditEvent.objects.get(action="research.validate")
    assert event.detail["predictions"] == len(validation) and event.detail["auc"] == 1.0

    training = sorted(world.pseudonyms("training"))[0]
    with pytest.raises(PredictionError, match=r"line 2: ID \(NCCID-[A-Z2-7]{16}\) belongs to the training set"):
        validate_predictions(data_manager, text.replace("\n", f"\n{training},0.5\n", 1),
                             0.5, world.source())
    with pytest.raises(ScopeError):
        validate_predictions(researcher, text, 0.5, world.source())


def test_image_level_predictions_by_sop_instance_uid(world, data_manager):
    images = [i for i in world.images if i["set_name"] == "validation"]
    status = {p["pseudonym"]: p["covid_status"] for p in world.patients}
    text = "SOP Instance UID,score\n" + "".join(
        f"{i['sop_uid']},{0.8 if status[i['pseudonym']] == 'positive' else 0.3}\n" for i in images)
    report = validate_predictions(data_manager, text, 0.5, world.source()).report
    assert report.unit == "image" and report.overall["n"] == len(images)
    assert report.overall["sensitivity"][0] == 1.0 and report.overall["specificity"][0] == 1.0
