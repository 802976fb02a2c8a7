"""The statistics that say which differences between models are real, checked against known answers:
simulated seed accuracies with and without a true difference, and hand-computed tables."""

import math
import random

import pytest
from scipy import stats

from mnistbench import comparisons
from mnistbench.comparisons import Reference, all_pairs, holm, mcnemar, paired, seeds_to_detect


def simulated_pair(rng: random.Random, n: int, true_difference: float, sd: float = 0.0015):
    """Test accuracies (fractions) of two models over n seeds; a seed moves both a little (shared split/order)."""
    a, b = {}, {}
    for seed in range(n):
        shared = rng.gauss(0, sd / 2)
        a[seed] = 0.985 + true_difference + shared + rng.gauss(0, sd)
        b[seed] = 0.985 + shared + rng.gauss(0, sd)
    return a, b


def test_with_no_true_difference_about_five_percent_of_draws_say_better():
    rng = random.Random(0)
    draws = 2000
    better = sum(paired("a", a, "b", b).verdict().startswith(("a is better", "b is better"))
                 for a, b in (simulated_pair(rng, 10, 0.0) for _ in range(draws)))
    assert 0.03 <= better / draws <= 0.07


def test_a_true_difference_of_two_sd_is_detected_in_most_draws():
    rng = random.Random(1)
    sd = 0.0015
    found = [paired("a", a, "b", b) for a, b in (simulated_pair(rng, 10, 2 * sd, sd) for _ in range(500))]
    detected = [c for c in found if c.p < 0.05 and c.difference > 0]
    assert len(detected) / len(found) > 0.9
    assert all(c.verdict().startswith("a is better than b by") for c in detected)


def test_the_interval_is_the_student_t_interval_of_the_per_seed_differences():
    a = {0: 0.990, 1: 0.992, 2: 0.991, 3: 0.993}
    b = {0: 0.989, 1: 0.989, 2: 0.990, 3: 0.990, 4: 0.5}  # seed 4: only b ran it, so it is not compared
    c = paired("a", a, "b", b)
    diffs = [0.1, 0.3, 0.1, 0.3]
    half = stats.t.ppf(0.975, 3) * stats.tstd(diffs) / 2
    assert c.n == 4 and c.difference == pytest.approx(0.2)
    assert (c.low, c.high) == (pytest.approx(0.2 - half), pytest.approx(0.2 + half))
    assert c.p == pytest.approx(stats.ttest_rel([100 * a[s] for s in range(4)], [100 * b[s] for s in range(4)]).pvalue)


def test_a_gap_only_the_pairs_own_test_finds_is_not_called_better_and_says_what_would_settle_it():
    """Its own interval excludes 0, Holm's correction for the family does not let it count: the verdict must say
    both, not 'no detectable difference' beside an interval that excludes 0."""
    accuracies = {"a": {0: 0.9900, 1: 0.9910, 2: 0.9905}, "b": {0: 0.9880, 1: 0.9885, 2: 0.9890},
                  "c": {0: 0.9850, 1: 0.9900, 2: 0.9870}, "d": {0: 0.9860, 1: 0.9880, 2: 0.9900}}
    ab = next(c for c in all_pairs(accuracies) if (c.a, c.b) == ("a", "b"))
    assert ab.p < 0.05 <= ab.p_holm and ab.low > 0 and ab.family == 6
    seeds = seeds_to_detect(ab.difference, ab.sd, alpha=0.05 / 6)
    assert seeds > ab.n
    assert ab.verdict() == (f"a is ahead of b by 0.20 points [{ab.low:.2f}, {ab.high:.2f}], but not beyond seed noise "
                            f"once corrected for the 6 comparisons (p = {ab.p_holm:.2g}); about {seeds} seeds would "
                            "settle a gap this size on these test images")


def test_no_detectable_difference_says_how_many_seeds_would_detect_a_tenth_of_a_point():
    c = paired("cnn", {0: 0.9880, 1: 0.9870, 2: 0.9890}, "vit", {0: 0.9875, 1: 0.9880, 2: 0.9880})
    assert c.verdict().startswith("no detectable difference between cnn and vit (+0.02 [")
    assert f"would take about {c.seeds_for_detectable} seeds" in c.verdict()
    # The normal approximation (z_0.975 + z_0.8)^2 sd^2 / d^2 is a lower bound the t-based count must meet.
    approx = ((stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * c.sd / 0.1) ** 2
    assert approx <= c.seeds_for_detectable <= approx + 4


def test_seeds_to_detect_grows_with_the_spread_and_shrinks_with_the_difference():
    assert seeds_to_detect(0.1, 0.05) < seeds_to_detect(0.1, 0.1) < seeds_to_detect(0.1, 0.2)
    assert seeds_to_detect(0.2, 0.1) < seeds_to_detect(0.1, 0.1)


def test_holm_on_a_hand_computed_example():
    # sorted 0.01, 0.03, 0.04 -> x3, x2, x1 = 0.03, 0.06, 0.04 -> kept monotone: 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert math.isnan(holm([math.nan, 0.01])[0]) and holm([math.nan, 0.01])[1] == pytest.approx(0.01)


def test_all_pairs_lists_pairs_without_shared_seeds_as_not_testable_and_corrects_only_the_tested():
    acc = {"m1": {0: 0.97, 1: 0.971, 2: 0.972}, "m2": {0: 0.98, 1: 0.982, 2: 0.981}, "m3": {7: 0.99, 8: 0.99}}
    found = comparisons.all_pairs(acc)
    assert [(c.a, c.b) for c in found] == [("m1", "m2"), ("m1", "m3"), ("m2", "m3")]
    assert found[0].p_holm == pytest.approx(found[0].p) and found[0].family == 1
    assert found[1].verdict() == "not testable: m1 and m3 share 0 seeds (a paired test needs two)"
    assert math.isnan(found[1].p) and math.isnan(found[1].p_holm)


def test_identical_differences_on_every_seed_are_said_so_not_p_zero():
    """Accuracies come in steps of 0.01 points: two seeds can differ by exactly the same amount."""
    found = comparisons.all_pairs({"mlp": {0: 0.86, 1: 0.86}, "cnn": {0: 0.85, 1: 0.85}})
    [c] = found
    assert math.isnan(c.p) and math.isnan(c.p_holm) and c.family == 0
    assert c.verdict() == ("mlp minus cnn is +1.00 points on every one of the 2 seeds they share: identical on "
                           "every seed, so the seeds give no spread to test against (no p)")


def test_a_reference_with_identical_seeds_has_a_floor_one_test_image_wide_not_zero():
    ref = comparisons.Reference([99.14, 99.14, 99.14])
    assert ref.sd == comparisons.RESOLUTION_POINTS
    low, high = ref.prediction_interval()
    assert low < 99.14 < high and ref.lower_bound(0.001) < 99.14
    assert 0 < ref.p_value(99.10) < 1


def test_the_fresh_sample_interval_adds_the_images_spread_to_the_seeds():
    """Two models that differ on a few images: the interval over seeds alone is narrower than with the images'
    sampling added, and both are centred on the same difference (hand-checked variance decomposition)."""
    images = 1000
    a = {s: [i >= 20 + s for i in range(images)] for s in range(3)}  # 980, 979, 978 right
    b = {s: [i >= 30 for i in range(images)] for s in range(3)}  # 970 right on every seed
    acc = {"a": {s: sum(v) / images for s, v in a.items()}, "b": {s: sum(v) / images for s, v in b.items()}}
    [c] = comparisons.all_pairs(acc)
    comparisons.add_image_sampling(c, a, b)
    assert c.difference == pytest.approx(0.9)
    per_image = [sum(a[s][i] - b[s][i] for s in range(3)) / 3 for i in range(images)]
    mean = sum(per_image) / images
    image_var = 100**2 * sum((d - mean) ** 2 for d in per_image) / (images - 1) / images
    half = comparisons.stats.t.ppf(0.975, 2) * math.sqrt(c.sd**2 / 3 + image_var)
    assert (c.fresh_low, c.fresh_high) == pytest.approx((0.9 - half, 0.9 + half))
    assert c.fresh_low < c.low and c.fresh_high > c.high


def test_mcnemar_exact_p_matches_a_hand_computed_table():
    # 10 images only a gets right, 2 only b, 88 both or neither: p = 2 * P(X <= 2), X ~ Binomial(12, 1/2)
    correct_a = [True] * 10 + [False] * 2 + [True] * 80 + [False] * 8
    correct_b = [False] * 10 + [True] * 2 + [True] * 80 + [False] * 8
    m = mcnemar("a", correct_a, "b", correct_b)
    assert (m.only_a_right, m.only_b_right, m.images) == (10, 2, 100)
    assert m.p == pytest.approx(2 * (1 + 12 + 66) / 2**12)
    assert m.difference == pytest.approx(8.0)
    assert m.verdict().startswith("a is better than b on these test images by 8.00 points [")
    assert mcnemar("a", [True, False], "b", [True, False]).p == 1.0  # no discordant image: nothing to test
    with pytest.raises(ValueError, match="expected the same images"):
        mcnemar("a", [True], "b", [True, False])


def test_reference_prediction_interval_bound_and_p_value_by_hand():
    ref = Reference([97.4, 97.6, 97.5, 97.7, 97.3])
    mean, sd, n = 97.5, stats.tstd([97.4, 97.6, 97.5, 97.7, 97.3]), 5
    scale = sd * math.sqrt(1 + 1 / n)
    assert ref.prediction_interval() == (pytest.approx(mean - stats.t.ppf(0.975, 4) * scale),
                                         pytest.approx(mean + stats.t.ppf(0.975, 4) * scale))
    assert ref.lower_bound(0.001) == pytest.approx(mean - stats.t.ppf(0.999, 4) * scale)
    assert ref.p_value(mean) == pytest.approx(1.0)
    lo, _ = ref.prediction_interval()
    assert ref.p_value(lo) == pytest.approx(0.05)


def test_a_sweep_names_its_best_point_and_which_others_it_cannot_tell_from_it():
    from mnistbench.sweep import against_best

    rng = random.Random(2)
    valid = {"point-0": {s: 0.990 + rng.gauss(0, 0.0005) for s in range(6)},
             "point-1": {s: 0.980 + rng.gauss(0, 0.0005) for s in range(6)},  # 1 point below: worse
             "point-2": {s: 0.990 + rng.gauss(0, 0.0005) for s in range(6)},  # the same recipe's spread
             "point-3": {0: 0.95}}  # one seed
    words = against_best(valid)
    best = next(p for p, w in words.items() if w == "best")
    assert best in ("point-0", "point-2")
    assert words["point-1"].startswith("worse by 1.0") and "p (Holm)" in words["point-1"]
    assert words[{"point-0": "point-2", "point-2": "point-0"}[best]].startswith("not distinguishable")
    assert words["point-3"] == "one seed: cannot tell"
