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
    MIN_GROUP,
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


def pseudonym(i):
    return "NCCID-" + f"{i:016d}".translate(str.maketrans("0123456789", "ABCDEFGHIJ"))


def synthetic_truth(n=300, seed=3):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.round(rng.normal(labels * 1.2, 1.0), 2)  # rounding makes ties, as real scores do
    patients = {pseudonym(i): Truth(
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
    truth, scores = synthetic_truth(80)
    scored = read_predictions(csv_of(truth, scores), truth)
    report = evaluate(scored, truth, 0.5, min_group=25)
    bands = dict(report.subgroups["Age band"])
    assert any(m is None for m in bands.values())
    page = render_html(report)
    assert "suppressed: fewer than 25 positive or negative patients" in page
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


def test_service_scores_validation_patients_and_refuses_training_ids(validation_world, data_manager,
                                                                     researcher):
    world = validation_world
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


def test_image_level_predictions_by_sop_instance_uid(validation_world, data_manager):
    world = validation_world
    images = [i for i in world.images if i["set_name"] == "validation"]
    status = {p["pseudonym"]: p["covid_status"] for p in world.patients}
    text = "SOP Instance UID,score\n" + "".join(
        f"{i['sop_uid']},{0.8 if status[i['pseudonym']] == 'positive' else 0.3}\n" for i in images)
    report = validate_predictions(data_manager, text, 0.5, world.source()).report
    assert report.unit == "image" and report.overall["n"] == len(images)
    assert report.overall["sensitivity"][0] == 1.0 and report.overall["specificity"][0] == 1.0


def test_a_single_prediction_is_refused_without_revealing_the_status(validation_world, data_manager):
    truth, _ = synthetic_truth(40)
    first = next(iter(truth.patients))
    with pytest.raises(PredictionError, match="too few patients to report on") as caught:
        read_predictions(f"pseudonym,score\n{first},0.3\n", truth)
    assert "positive: " not in str(caught.value) and " 1 " not in str(caught.value)
    # Nine of one class is still too few, however many of the other.
    labels = {p: t.label for p, t in truth.patients.items()}
    nine = [p for p in truth.patients if labels[p] == 1][:9] + [p for p in truth.patients if labels[p] == 0]
    with pytest.raises(PredictionError, match="too few patients"):
        read_predictions("pseudonym,score\n" + "".join(f"{p},0.5\n" for p in nine), truth)
    # The service refuses too, and the refusal is audited.
    one = sorted(validation_world.pseudonyms("validation"))[0]
    with pytest.raises(PredictionError, match="too few patients"):
        validate_predictions(data_manager, f"pseudonym,score\n{one},0.3\n", 0.5, validation_world.source())
    assert AuditEvent.objects.filter(action="research.validate.rejected").count() == 1
    assert not AuditEvent.objects.filter(action="research.validate").exists()


def test_a_lone_small_group_cannot_be_recovered_by_subtraction():
    # 25 White patients (12 positive) and one positive "Other": overall 13 - White 12 would be 1.
    patients = {pseudonym(i): Truth(i % 2, "RTEST", "Male", 50, "White") for i in range(25)}
    patients[pseudonym(99)] = Truth(1, "RTEST", "Female", 50, "Other")
    truth = GroundTruth(patients, {})
    report = evaluate(read_predictions("pseudonym,score\n" + "".join(f"{p},0.5\n" for p in patients),
                                       truth), truth)
    assert report.overall["positives"] == 13
    assert dict(report.subgroups["Ethnicity"]) == {"Other": None, "White": None}
    assert dict(report.subgroups["Sex"]) == {"Female": None, "Male": None}
    page = render_html(report)
    assert not re.search(r"<td>White</td><td>\d", page)


def test_suppressed_groups_together_always_hold_enough_of_each_class():
    """Whatever the mix, overall minus the shown rows never leaves fewer than min_group of a class."""
    rng = np.random.default_rng(11)
    for trial in range(40):
        n = int(rng.integers(20, 120))
        patients = {pseudonym(i): Truth(int(rng.random() < 0.4), "RTEST", "Male",
                                        int(rng.integers(0, 100)),
                                        str(rng.choice(["White", "Asian", "Black", "Other"],
                                                       p=[0.7, 0.15, 0.1, 0.05])))
                    for i in range(n)}
        truth = GroundTruth(patients, {})
        text = "pseudonym,score\n" + "".join(f"{p},{rng.random():.3f}\n" for p in patients)
        try:
            report = evaluate(read_predictions(text, truth), truth)
        except PredictionError:
            labels = [t.label for t in patients.values()]
            assert min(sum(labels), len(labels) - sum(labels)) < MIN_GROUP
            continue
        for name, rows in report.subgroups.items():
            shown = [m for _, m in rows if m is not None]
            for cls in ("positives", "negatives"):
                assert all(m[cls] >= MIN_GROUP for m in shown), (trial, name)
                left = report.overall[cls] - sum(m[cls] for m in shown)
                assert left == 0 or left >= MIN_GROUP, (trial, name, cls, left)


def test_a_group_of_one_class_only_is_suppressed():
    """Twelve patients of one site, all positive, would tell anyone at that site their status."""
    patients = {pseudonym(i): Truth(i % 2, "RTEST", "Male", 50, "White") for i in range(40)}
    patients |= {pseudonym(100 + i): Truth(1, "OTHER", "Male", 50, "White") for i in range(12)}
    truth = GroundTruth(patients, {})
    report = evaluate(read_predictions("pseudonym,score\n" + "".join(f"{p},0.5\n" for p in patients),
                                       truth), truth)
    assert dict(report.subgroups["Site"]) == {"OTHER": None, "RTEST": None}
    assert report.overall["positives"] == 32
