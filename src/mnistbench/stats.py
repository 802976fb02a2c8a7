"""Statistics over seeds: the mean and the half-width of its Student-t confidence interval."""

from __future__ import annotations

import math

from scipy import stats


def mean_ci(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the two-sided Student-t confidence interval (nan for one value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    sd = stats.tstd(values)
    return mean, stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)


def accuracy_interval(accuracies: list[float]) -> str:
    """Accuracies (fractions) as 'mean ± half-width (n=N)' in percent; the interval only when n > 1."""
    mean, half = mean_ci([100 * a for a in accuracies])
    n = len(accuracies)
    return f"{mean:.2f} (n=1)" if n == 1 else f"{mean:.2f} ± {half:.2f} (n={n})"
