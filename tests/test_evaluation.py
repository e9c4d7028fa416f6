"""EER, ROC, DET and FAR/FRR against hand-computed examples; the CMU protocol on small frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

import detectors.evaluation as evaluation
from detectors.evaluation import (
    MEU_REFERENCE_EER,
    cmu_splits,
    det_curve,
    eer,
    evaluate_cmu,
    far_frr_at,
    markdown_table,
    protocol_sizes,
    roc_auc,
    roc_curve,
)

DATASETS = Path(__file__).parents[1].parent / "shared" / "datasets"

# Hand example: genuine 1, 2, 4, 4; impostors 3, 5, 6, 7. At threshold 3 FRR = 2/4 (the two 4s) and
# FAR = 1/4 (the 3); at 4 FRR = 0, FAR = 1/4. FRR - FAR goes +0.25 -> -0.25, so the crossing is halfway:
# EER 0.25 at threshold 3.5. AUC: 3 beats 1 and 2; 5, 6, 7 beat all four: 14 of 16 pairs.
GENUINE = [1.0, 2.0, 4.0, 4.0]
IMPOSTOR = [3.0, 5.0, 6.0, 7.0]


def test_eer_hand_example_interpolates_at_the_crossing() -> None:
    rate, threshold = eer(GENUINE, IMPOSTOR)
    assert rate == pytest.approx(0.25)
    assert threshold == pytest.approx(3.5)


def test_eer_with_unequal_counts() -> None:
    """Genuine 1, 2, 3; impostors 2.5, 4, 5, 6. At 2.5: FRR 1/3, FAR 1/4; at 3: FRR 0, FAR 1/4.
    FRR - FAR goes 1/12 -> -1/4, a quarter of the way: FRR = 1/3 - 1/12 = 1/4 = FAR, threshold 2.625."""
    rate, threshold = eer([1.0, 2.0, 3.0], [2.5, 4.0, 5.0, 6.0])
    assert rate == pytest.approx(0.25)
    assert threshold == pytest.approx(2.625)


def test_perfectly_separated_scores_have_eer_zero_and_auc_one() -> None:
    rate, threshold = eer([0.1, 0.2, 0.3], [0.7, 0.8])
    assert rate == 0.0
    assert 0.3 <= threshold < 0.7
    assert far_frr_at(threshold, [0.1, 0.2, 0.3], [0.7, 0.8]) == (0.0, 0.0)
    assert roc_auc([0.1, 0.2, 0.3], [0.7, 0.8]) == 1.0


def test_identical_scores_have_eer_one_half_and_auc_one_half() -> None:
    assert eer([5.0] * 4, [5.0] * 6)[0] == pytest.approx(0.5)
    assert roc_auc([5.0] * 4, [5.0] * 6) == 0.5


def test_reversed_scores_have_eer_one() -> None:
    assert eer([0.7, 0.8], [0.1, 0.2])[0] == pytest.approx(1.0)


def test_far_frr_at_hand_example() -> None:
    assert far_frr_at(3.5, GENUINE, IMPOSTOR) == (0.25, 0.5)  # 3 accepted; both 4s rejected
    assert far_frr_at(4.0, GENUINE, IMPOSTOR) == (0.25, 0.0)  # flagged only above the threshold


def test_roc_auc_hand_example() -> None:
    assert roc_auc(GENUINE, IMPOSTOR) == pytest.approx(14 / 16)


def test_roc_curve_hand_example_puts_impostors_positive() -> None:
    """At each threshold, the share of genuine (FRR) and impostor (1 - FAR) windows scoring at or above it."""
    fpr, tpr, thresholds = roc_curve(GENUINE, IMPOSTOR)
    np.testing.assert_array_equal(thresholds, [np.inf, 7, 6, 5, 4, 3, 2, 1])
    np.testing.assert_allclose(fpr, [0, 0, 0, 0, 0.5, 0.5, 0.75, 1])
    np.testing.assert_allclose(tpr, [0, 0.25, 0.5, 0.75, 0.75, 1, 1, 1])
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(GENUINE, IMPOSTOR))


def test_det_curve_agrees_with_far_frr_at_every_threshold() -> None:
    far, frr, thresholds = det_curve(GENUINE, IMPOSTOR)
    np.testing.assert_array_equal(thresholds, [1, 2, 3, 4, 5, 6, 7])
    np.testing.assert_allclose(far, [0, 0, 0.25, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(frr, [0.75, 0.5, 0.5, 0, 0, 0, 0])
    for f, r, t in zip(far, frr, thresholds, strict=True):
        assert far_frr_at(t, GENUINE, IMPOSTOR) == (f, r)


def test_non_finite_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        eer([1.0, float("nan")], [2.0])


# ------------------------------------------------------------------------------------- CMU protocol


def cmu_frame(subjects: int = 5, sessions: int = 2, reps_per_session: int = 7, seed: int = 1) -> pl.DataFrame:
    """Windows in read_cmu's shape: feature `who` = subject number, `order` = position in typing order.

    Sessions are named so that string order is wrong ("s-10" before "s-2"), rows are shuffled, and the
    remaining features are Gaussian around a per-subject mean, so detectors have something to learn.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for subject in range(subjects):
        mean = rng.uniform(80, 200, 4)
        for position in range(sessions * reps_per_session):
            session, rep = divmod(position, reps_per_session)
            rows.append({"user_id": f"u{subject}", "session_id": f"cmu-u{subject}-{[2, 10, 11][session]}",
                         "rep": rep + 1, "who": float(subject), "order": float(position),
                         **{f"H.{k}": v for k, v in enumerate(rng.normal(mean, mean * 0.05))}})
    return pl.DataFrame(rows).sample(fraction=1.0, shuffle=True, seed=seed)


FEATURES = ["H.0", "H.1", "H.2", "H.3"]
SMALL_FOREST = {"background": {"n_estimators": 25}}  # enough for these easy subjects, fast


def test_splits_follow_typing_order_and_keep_impostor_rows_out_of_the_background() -> None:
    splits, skipped = cmu_splits(cmu_frame(), ["who", "order"], train_reps=8, impostor_reps=3)
    assert skipped == []
    assert [s.subject for s in splits] == [f"u{i}" for i in range(5)]
    for split in splits:
        me = float(split.subject[1:])
        assert (split.train[:, 0] == me).all() and list(split.train[:, 1]) == list(range(8))
        assert list(split.genuine_test[:, 1]) == list(range(8, 14))
        assert me not in split.impostors[:, 0] and me not in split.background[:, 0]
        assert set(split.impostors[:, 1]) == {0, 1, 2}  # every other subject's first 3 repetitions
        assert set(split.background[:, 1]) == set(range(3, 8))  # the rest of their training part only
        assert len(split.impostors) == 4 * 3 and len(split.background) == 4 * 5


def test_subjects_without_test_repetitions_are_skipped_and_named() -> None:
    frame = cmu_frame().filter(~((pl.col("user_id") == "u4") & (pl.col("order") >= 8)))
    splits, skipped = cmu_splits(frame, FEATURES, train_reps=8, impostor_reps=3)
    assert skipped == ["u4"] and len(splits) == 4


def test_evaluate_cmu_reports_the_documented_shape_and_progress() -> None:
    calls: list[tuple[int, int]] = []
    result = evaluate_cmu(cmu_frame(), FEATURES, ["manhattan_scaled", "zscore_count", "background"], train_reps=8,
                          impostor_reps=3, detector_params=SMALL_FOREST,
                          progress=lambda done, total: calls.append((done, total)))
    assert result["protocol"] | {"name": "cmu", "train_reps": 8, "impostor_reps": 3, "subjects": 5,
                                 "features": 4} == result["protocol"]
    assert list(result["detectors"]) == ["manhattan_scaled", "zscore_count", "background"]
    for figures in result["detectors"].values():
        assert {"eer_mean", "eer_sd", "auc", "far", "frr"} <= set(figures)
        assert all(0.0 <= figures[key] <= 1.0 for key in ("eer_mean", "auc", "far", "frr", "eer_pooled"))
        assert figures["auc"] > 0.8  # well separated simulated subjects
    assert calls == [(done, 15) for done in range(1, 16)]


def test_open_set_background_never_contains_the_impostors_it_is_tested_on(monkeypatch) -> None:
    seen: list[tuple[set[float], set[float]]] = []
    original = evaluation._trial

    def spy(detector, train, background, genuine_test, impostors, calibration, target_frr):
        if background is not None:
            seen.append((set(background[:, 0]), set(impostors[:, 0])))
        return original(detector, train, background, genuine_test, impostors, calibration, target_frr)

    monkeypatch.setattr(evaluation, "_trial", spy)
    frame = cmu_frame()
    evaluate_cmu(frame, ["who", "order", *FEATURES], ["background"], train_reps=8, impostor_reps=3, open_set_folds=2,
                 detector_params=SMALL_FOREST)
    assert len(seen) == 5 * 2
    assert all(not (background & impostors) for background, impostors in seen)
    assert all(len(background) == 2 for background, _ in seen)  # 4 others, half held out per fold


def test_markdown_table_puts_published_figures_beside_ours() -> None:
    result = evaluate_cmu(cmu_frame(), FEATURES, ["manhattan_scaled"], train_reps=8, impostor_reps=3)
    table = markdown_table(result, MEU_REFERENCE_EER)
    assert "| manhattan_scaled |" in table and "0.1400" in table
    assert "train on the first 8 repetitions" in table


def test_protocol_input_errors_say_what_to_change() -> None:
    with pytest.raises(ValueError, match="impostor_reps"):
        cmu_splits(cmu_frame(), FEATURES, train_reps=3, impostor_reps=3)
    with pytest.raises(ValueError, match="lack column"):
        cmu_splits(cmu_frame(), ["H.9"], train_reps=8, impostor_reps=3)
    with pytest.raises(KeyError, match="unknown detector"):
        evaluate_cmu(cmu_frame(), FEATURES, ["nope"], train_reps=8, impostor_reps=3)


@pytest.mark.parametrize(("counts", "given", "expected"), [
    ([400, 400, 400], (None, None), (200, 5)),  # the CMU benchmark: the published protocol
    ([400, 420], (None, None), (200, 5)),
    ([51, 51, 51], (None, None), (25, 5)),  # MEU-Mobile KSD
    ([51, 12, 60], (None, None), (6, 3)),  # the smallest subject decides; impostors at most half the training
    ([4, 9], (None, None), (2, 1)),  # the least that can be evaluated
    ([51, 51], (10, None), (10, 5)),
    ([51, 51], (None, 2), (25, 2)),
    ([51, 51], (30, 7), (30, 7)),  # given values are used as they are
])
def test_protocol_sizes_are_derived_from_the_data_unless_given(counts: list[int], given: tuple,
                                                               expected: tuple) -> None:
    train_reps, impostor_reps, derived = protocol_sizes(counts, *given)

    assert (train_reps, impostor_reps) == expected
    assert set(derived) == {name for name, value in zip(("train_reps", "impostor_reps"), given, strict=True)
                            if value is None}
    why = derived.get("train_reps", "")
    assert str(min(counts)) in why or "published" in why or given[0] is not None


def test_protocol_sizes_refuse_too_few_repetitions_with_the_count() -> None:
    with pytest.raises(ValueError, match="smallest subject has 3 repetitions"):
        protocol_sizes([3, 51])
    with pytest.raises(ValueError, match="no subject"):
        protocol_sizes([])


def test_evaluate_cmu_file_with_default_sizes(tmp_path: Path) -> None:
    """A CMU-layout file of 5 subjects x 14 repetitions: train on 7, impostors' first 3, and say so."""
    from app.engine.detector_evaluation import evaluate

    frame = cmu_frame()
    path = tmp_path / "small.csv"
    frame.sort("user_id", "session_id", "rep").select(
        subject=pl.col("user_id"), sessionIndex=pl.col("session_id").str.extract(r"(\d+)$").cast(pl.Int64),
        rep=pl.col("rep"), **{name: pl.col(name) / 1000 for name in FEATURES}).write_csv(path)

    result = evaluate(path, "cmu", detectors=["manhattan_scaled"])

    protocol = result["protocol"]
    assert (protocol["train_reps"], protocol["impostor_reps"], protocol["subjects"]) == (7, 3, 5)
    assert set(protocol["derived"]) == {"train_reps", "impostor_reps"} and "14" in protocol["derived"]["train_reps"]
    assert result["detectors"]["manhattan_scaled"]["auc"] > 0.8
    explicit = evaluate(path, "cmu", detectors=["manhattan_scaled"], train_reps=8, impostor_reps=2)
    assert (explicit["protocol"]["train_reps"], explicit["protocol"]["impostor_reps"]) == (8, 2)
    assert explicit["protocol"]["derived"] == {}
    with pytest.raises(ValueError, match="most any subject has is 14"):
        evaluate(path, "cmu", detectors=["manhattan_scaled"], train_reps=14)


@pytest.mark.datasets
def test_scaled_manhattan_on_meu_timings_matches_the_published_figure() -> None:
    """MEU-Mobile KSD, H/DD/UD columns, 25 training / 5 impostor repetitions: about 0.14 published."""
    path = DATASETS / "meu-mobile-ksd" / "meu-mobile-ksd.csv"
    if not path.is_file():
        pytest.skip(f"../shared/datasets/meu-mobile-ksd/meu-mobile-ksd.csv not found: {path}")
    from store.importers.cmu import read_cmu

    data = read_cmu(path)
    result = evaluate_cmu(data.windows, data.timing_columns, ["manhattan_scaled"], train_reps=25, impostor_reps=5)
    assert result["protocol"]["subjects"] == 56
    assert result["detectors"]["manhattan_scaled"]["eer_mean"] == pytest.approx(MEU_REFERENCE_EER["manhattan_scaled"],
                                                                                 abs=0.01)
