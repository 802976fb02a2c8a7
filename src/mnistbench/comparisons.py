"""Which differences between models are real: paired tests over seeds, McNemar's test for one seed, and where a
new number falls in a model's distribution over seeds (claims and the accuracy gate).

The methods and why they were chosen: docs/statistics.md. Accuracies are fractions in, points (%) out.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from scipy import stats

ALPHA = 0.05  # two-sided, for intervals and tests between models; Holm's correction keeps it family-wise
DETECTABLE_POINTS = 0.1  # the difference a reader asks about: how many seeds would detect 0.1 points?
POWER = 0.8
# One test image in 10,000 is 0.01 points: the finest step an accuracy takes, and so the smallest spread a
# model's seeds can be said to have (ten seeds that all score 98.79 do not make every other score impossible).
RESOLUTION_POINTS = 0.01


@dataclass
class PairedComparison:
    """Model `a` minus model `b` over the seeds both ran, in points of test accuracy."""

    a: str
    b: str
    n: int
    difference: float  # mean of the per-seed differences
    low: float  # its 95% interval
    high: float
    p: float  # two-sided paired t-test
    p_holm: float = math.nan  # corrected for every pair of the family (all_pairs); alone, the pair's own p
    sd: float = math.nan  # of the per-seed differences
    family: int = 1  # the comparisons p_holm is corrected for
    # The interval again with the sampling of test images added (`add_image_sampling`): the difference on a fresh
    # sample of digits, not only on these 10,000 images.
    fresh_low: float = math.nan
    fresh_high: float = math.nan

    @property
    def testable(self) -> bool:
        return bool(self.n >= 2 and self.sd > 0)

    @property
    def seeds_for_detectable(self) -> int | None:
        """Seeds for 80% power at DETECTABLE_POINTS, from the observed spread of the differences."""
        return seeds_to_detect(DETECTABLE_POINTS, self.sd) if self.sd > 0 else None

    def verdict(self) -> str:
        """'A is better than B by D points [lo, hi]'; 'A is ahead of B ..., but not once corrected ...' when only
        the pair's own test finds the gap; or 'no detectable difference ...'."""
        if self.n < 2:
            return f"not testable: {self.a} and {self.b} share {self.n} seed{'s' * (self.n != 1)} (a paired test needs two)"
        if self.sd == 0:
            return (f"{self.a} minus {self.b} is {self.difference:+.2f} points on every one of the {self.n} seeds they "
                    f"share: identical on every seed, so the seeds give no spread to test against (no p)")
        better, worse, sign = (self.a, self.b, 1) if self.difference > 0 else (self.b, self.a, -1)
        lo, hi = sorted((sign * self.low, sign * self.high))
        if self.p_holm < ALPHA:
            return f"{better} is better than {worse} by {sign * self.difference:.2f} points [{lo:.2f}, {hi:.2f}]"
        if self.p < ALPHA:  # the interval (the pair's own) excludes 0; the family's correction does not let it count
            seeds = seeds_to_detect(abs(self.difference), self.sd, alpha=ALPHA / self.family)
            return (f"{better} is ahead of {worse} by {sign * self.difference:.2f} points [{lo:.2f}, {hi:.2f}], but "
                    f"not beyond seed noise once corrected for the {self.family} comparisons (p = {self.p_holm:.2g}); "
                    f"about {seeds} seeds would settle a gap this size on these test images")
        needed = (f"detecting {DETECTABLE_POINTS} points on these test images would take about "
                  f"{self.seeds_for_detectable} seeds"
                  if self.seeds_for_detectable else "the seeds run cannot say how many would detect it")
        return (f"no detectable difference between {self.a} and {self.b} "
                f"({self.difference:+.2f} [{self.low:+.2f}, {self.high:+.2f}]); {needed}")


def paired(a: str, accuracies_a: dict[int, float], b: str, accuracies_b: dict[int, float]) -> PairedComparison:
    """A paired t-test of a - b over the seeds both ran: the same seed means the same split, initial-weight
    stream and batch order, so pairing removes what the seed does to both."""
    seeds = sorted(accuracies_a.keys() & accuracies_b.keys())
    # Rounded far below one image (0.01 points): the same difference computed from other accuracies is the same
    # number, so equal differences have no spread rather than a spread of floating-point noise.
    diffs = [round(100 * (accuracies_a[s] - accuracies_b[s]), 9) for s in seeds]
    n = len(diffs)
    mean = sum(diffs) / n if n else math.nan
    if n < 2:
        return PairedComparison(a, b, n, mean, math.nan, math.nan, math.nan)
    sd = stats.tstd(diffs) if len(set(diffs)) > 1 else 0.0
    if sd == 0:  # identical differences on every seed: no spread to test against, so no test (not p = 0)
        return PairedComparison(a, b, n, mean, mean, mean, math.nan, sd=0.0)
    half = stats.t.ppf(1 - ALPHA / 2, n - 1) * sd / math.sqrt(n)
    p = float(stats.ttest_1samp(diffs, 0.0).pvalue)
    return PairedComparison(a, b, n, mean, mean - half, mean + half, p, p_holm=p, sd=sd)


def seeds_to_detect(difference: float, sd: float, alpha: float = ALPHA, power: float = POWER) -> int:
    """The smallest n at which a two-sided paired t-test detects `difference` with `power`, for differences
    spread by `sd` (the noncentral t distribution, not the normal approximation)."""
    # The normal approximation is a lower bound: start there and step up until the t-test has the power.
    n = max(2, math.floor(((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * sd / difference) ** 2))
    while stats.nct.sf(stats.t.ppf(1 - alpha / 2, n - 1), n - 1, difference / sd * math.sqrt(n)) < power:
        n += 1
    return n


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down correction: each p multiplied by how many hypotheses were still open, kept monotone.
    A nan (a pair that could not be tested) stays nan and is not counted in the family."""
    order = sorted((i for i, p in enumerate(p_values) if not math.isnan(p)), key=lambda i: p_values[i])
    adjusted, running = [math.nan] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def all_pairs(accuracies: dict[str, dict[int, float]]) -> list[PairedComparison]:
    """Every pair of models, in the order given; the testable ones (two shared seeds or more, some spread)
    Holm-corrected together, the others listed with why they are not tested."""
    found = [paired(a, accuracies[a], b, accuracies[b]) for a, b in itertools.combinations(accuracies, 2)]
    family = int(sum(c.testable for c in found))
    for comparison, p in zip(found, holm([c.p for c in found])):
        comparison.p_holm, comparison.family = p, family
    return found


def add_image_sampling(comparison: PairedComparison, correct_a: dict[int, list[bool]],
                       correct_b: dict[int, list[bool]]) -> None:
    """Widen the pair's interval by the sampling of test images: the seeds' variance of the mean (sd^2 / n) plus
    the images' (the variance over images of each image's seed-averaged difference, / images), with n - 1
    degrees of freedom. It answers "on a fresh sample of digits", where the paired t-test answers "on these"."""
    seeds = sorted(correct_a.keys() & correct_b.keys())
    if len(seeds) < 2:
        return
    images = len(correct_a[seeds[0]])
    per_image = [sum(correct_a[s][i] - correct_b[s][i] for s in seeds) / len(seeds) for i in range(images)]
    mean = sum(per_image) / images
    image_var = 100**2 * sum((d - mean) ** 2 for d in per_image) / (images - 1) / images
    se = math.sqrt(comparison.sd**2 / len(seeds) + image_var)
    half = stats.t.ppf(1 - ALPHA / 2, len(seeds) - 1) * se
    comparison.fresh_low, comparison.fresh_high = comparison.difference - half, comparison.difference + half


@dataclass
class McNemar:
    """Two models' predictions of the same test images: where one is right and the other wrong."""

    a: str
    b: str
    only_a_right: int
    only_b_right: int
    images: int
    p: float  # exact two-sided: the discordant images split like a fair coin under no difference
    p_holm: float = math.nan  # corrected for every pair of the family (all_mcnemar); alone, the pair's own p
    seed_a: int | None = None  # the runs compared, named in the report
    seed_b: int | None = None

    @property
    def difference(self) -> float:
        return 100 * (self.only_a_right - self.only_b_right) / self.images

    def interval(self) -> tuple[float, float]:
        """95% interval of the accuracy difference in points (paired proportions, Wald)."""
        n, b, c = self.images, self.only_a_right, self.only_b_right
        se = math.sqrt(max(b + c - (b - c) ** 2 / n, 0.0)) / n
        z = stats.norm.ppf(1 - ALPHA / 2)
        return self.difference - 100 * z * se, self.difference + 100 * z * se

    def verdict(self) -> str:
        lo, hi = self.interval()
        if self.p_holm < ALPHA:
            better, worse, sign = (self.a, self.b, 1) if self.difference > 0 else (self.b, self.a, -1)
            lo, hi = sorted((sign * lo, sign * hi))
            return f"{better} is better than {worse} on these test images by {sign * self.difference:.2f} points [{lo:.2f}, {hi:.2f}]"
        return (f"no detectable difference between {self.a} and {self.b} on these test images "
                f"({self.difference:+.2f} [{lo:+.2f}, {hi:+.2f}]); one seed says nothing of seed noise")


def mcnemar(a: str, correct_a: list[bool], b: str, correct_b: list[bool]) -> McNemar:
    if len(correct_a) != len(correct_b):
        raise ValueError(f"{a} and {b} predicted {len(correct_a)} and {len(correct_b)} images; expected the same images")
    only_a = sum(x and not y for x, y in zip(correct_a, correct_b))
    only_b = sum(y and not x for x, y in zip(correct_a, correct_b))
    discordant = only_a + only_b
    p = 1.0 if discordant == 0 else float(stats.binomtest(only_a, discordant, 0.5).pvalue)
    return McNemar(a, b, only_a, only_b, len(correct_a), p, p_holm=p)


def all_mcnemar(correct: dict[str, list[bool]]) -> list[McNemar]:
    found = [mcnemar(a, correct[a], b, correct[b]) for a, b in itertools.combinations(correct, 2)]
    for comparison, p in zip(found, holm([c.p for c in found])):
        comparison.p_holm, comparison.family = p, len(found)
    return found


@dataclass
class Reference:
    """A model's test accuracies over seeds, in points: the distribution one more seed is drawn from."""

    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / self.n

    @property
    def sd(self) -> float:
        """Over seeds, but never below one test image (RESOLUTION_POINTS): identical scores are not certainty."""
        return max(stats.tstd(self.values), RESOLUTION_POINTS) if len(set(self.values)) > 1 else RESOLUTION_POINTS

    def _scale(self) -> float:
        return self.sd * math.sqrt(1 + 1 / self.n)  # one new run: the mean's uncertainty plus the run's own

    def prediction_interval(self, level: float = 1 - ALPHA) -> tuple[float, float]:
        """Where one more seed lands with probability `level` (two-sided, Student t with n - 1 df)."""
        half = stats.t.ppf(0.5 + level / 2, self.n - 1) * self._scale()
        return self.mean - half, self.mean + half

    def lower_bound(self, false_alarm: float) -> float:
        """One-sided: a healthy new seed falls below this with probability `false_alarm`."""
        return self.mean - stats.t.ppf(1 - false_alarm, self.n - 1) * self._scale()

    def p_value(self, value: float) -> float:
        """Two-sided: how often one more seed lands at least this far from the mean."""
        t = (value - self.mean) / self._scale()
        return float(2 * stats.t.sf(abs(t), self.n - 1))
