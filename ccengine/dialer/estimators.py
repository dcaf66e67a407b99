"""Online estimates the pacer needs: answer odds, ring times, talk and wrap times.

All are weighted histograms with exponential forgetting, so they follow a
change in the answer rate during the day without assuming a distribution
family (real talk times are not exactly lognormal, real "no answer" calls
are released by a timer, not at random). The pacer never asks for single
values: it asks for *conditional tables* -- "a call that has rung for g
seconds: probability it is answered live within s more seconds" -- which are
rebuilt only every ``refresh_every`` observations to keep pacing cheap.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

_EPS = 1e-12


class DecayingHistogram:
    """Histogram of durations on [0, bin_width * n_bins) with exponential forgetting.

    Each new observation weighs ``1 / decay`` times more than the previous
    one, i.e. the effective memory is about ``1 / (1 - decay)`` observations.
    Values past the range land in the last bin.
    """

    def __init__(self, bin_width: float, n_bins: int, decay: float,
                 prior: FloatArray | None = None, prior_weight: float = 0.0) -> None:
        self.bin_width = bin_width
        self.n_bins = n_bins
        self.decay = decay
        self.weights = np.zeros(n_bins)
        self._gain = 1.0
        self.count = 0
        if prior is not None and prior_weight > 0:
            mass = np.asarray(prior, dtype=np.float64)
            self.weights += prior_weight * mass / mass.sum()

    @property
    def edges(self) -> FloatArray:
        return np.arange(self.n_bins + 1, dtype=np.float64) * self.bin_width

    def age(self) -> None:
        """Make everything seen so far weigh a little less (one step of forgetting)."""
        self._gain /= self.decay
        if self._gain > 1e9:
            self.weights /= self._gain
            self._gain = 1.0

    def observe(self, value: float) -> None:
        index = min(max(int(value / self.bin_width), 0), self.n_bins - 1)
        self.age()
        self.weights[index] += self._gain
        self.count += 1

    def total(self) -> float:
        return float(self.weights.sum()) / self._gain

    def survival_at_edges(self) -> FloatArray:
        """P(X > edge) at every bin edge (mass uniform inside a bin)."""
        w = self.weights
        total = float(w.sum())
        if total <= 0:
            return np.ones(self.n_bins + 1)
        cdf = np.concatenate(([0.0], np.cumsum(w))) / total
        return np.clip(1.0 - cdf, 0.0, 1.0)

    def survival(self, x: FloatArray) -> FloatArray:
        return np.interp(x, self.edges, self.survival_at_edges(), right=0.0)

    def mean(self) -> float:
        total = float(self.weights.sum())
        if total <= 0:
            return 0.0
        centers = (np.arange(self.n_bins) + 0.5) * self.bin_width
        return float((self.weights * centers).sum() / total)

    def quantiles(self, probs: FloatArray) -> FloatArray:
        cdf = 1.0 - self.survival_at_edges()
        return np.interp(probs, cdf, self.edges)


def _gamma_like_prior(edges: FloatArray, mean: float) -> FloatArray:
    """Broad shape-2 gamma mass per bin: a weak starting belief, soon outweighed."""
    centers = 0.5 * (edges[:-1] + edges[1:])
    scale = mean / 2.0
    return centers * np.exp(-centers / scale) + _EPS


class RingEstimator:
    """Answer probability and ring-time distributions, live vs. not live.

    "Live" is whatever the dialer would hand to an agent: a human answer, or
    a human verdict when AMD is on (the ring time is then the time to the
    verdict). Not-live covers no answer, busy, invalid and machines.
    """

    def __init__(self, memory: int = 600, bin_width: float = 0.25, max_s: float = 120.0,
                 prior_p: float = 0.25, prior_weight: float = 20.0,
                 refresh_every: int = 100) -> None:
        n_bins = int(max_s / bin_width)
        decay = 1.0 - 1.0 / memory
        edges = np.arange(n_bins + 1, dtype=np.float64) * bin_width
        self.live = DecayingHistogram(bin_width, n_bins, decay, _gamma_like_prior(edges, 10.0),
                                      prior_weight * prior_p)
        self.other = DecayingHistogram(bin_width, n_bins, decay, _gamma_like_prior(edges, 15.0),
                                       prior_weight * (1 - prior_p))
        self.refresh_every = refresh_every
        self.version = 0
        self._since_refresh = 0

    def observe(self, live: bool, ring_s: float) -> None:
        (self.live if live else self.other).observe(ring_s)
        # keep both histograms on one clock so their totals stay comparable
        (self.other if live else self.live).age()
        self._since_refresh += 1
        if self._since_refresh >= self.refresh_every:
            self._since_refresh = 0
            self.version += 1

    @property
    def observations(self) -> int:
        return self.live.count + self.other.count

    def answer_probability(self) -> float:
        live = self.live.total()
        other = self.other.total()
        return live / max(live + other, _EPS)

    def answer_within_table(self, ages: FloatArray, horizons: FloatArray) -> FloatArray:
        """P(answered live within h more seconds | still ringing at age g).

        Rows are ``ages``, columns ``horizons``. This is where ring age pays
        off: past the no-answer timer a ringing call is almost surely live,
        while a call in its first seconds is mostly going nowhere.
        """
        p = self.answer_probability()
        s_live_at = self.live.survival(ages)
        s_other_at = self.other.survival(ages)
        still = p * s_live_at + (1 - p) * s_other_at
        later = self.live.survival(ages[:, None] + horizons[None, :])
        num = p * (s_live_at[:, None] - later)
        return np.clip(num / np.maximum(still, _EPS)[:, None], 0.0, 1.0)

    def new_call_answer_within(self, horizons: FloatArray) -> FloatArray:
        """P(a call placed now is answered live within h)."""
        return self.answer_probability() * (1.0 - self.live.survival(horizons))

    def live_ring_density(self, horizons: FloatArray) -> FloatArray:
        """Probability mass of the live ring time in each (h[k-1], h[k]] cell."""
        cdf = 1.0 - self.live.survival(horizons)
        return np.diff(cdf, prepend=0.0)


class ServiceEstimator:
    """Talk and wrap durations, for "when will busy agents be free again"."""

    def __init__(self, memory: int = 2000, refresh_every: int = 300,
                 prior_talk_s: float = 180.0, prior_wrap_s: float = 30.0,
                 prior_weight: float = 10.0) -> None:
        decay = 1.0 - 1.0 / memory
        talk_edges = np.arange(3601, dtype=np.float64)
        wrap_edges = np.arange(0.0, 600.25, 0.5)
        self.talk = DecayingHistogram(1.0, 3600, decay, _gamma_like_prior(talk_edges, prior_talk_s),
                                      prior_weight)
        self.wrap = DecayingHistogram(0.5, 1200, decay, _gamma_like_prior(wrap_edges, prior_wrap_s),
                                      prior_weight)
        self.refresh_every = refresh_every
        self.version = 0
        self._since_refresh = 0

    def _tick(self) -> None:
        self._since_refresh += 1
        if self._since_refresh >= self.refresh_every:
            self._since_refresh = 0
            self.version += 1

    def observe_talk(self, seconds: float) -> None:
        self.talk.observe(seconds)
        self._tick()

    def observe_wrap(self, seconds: float) -> None:
        self.wrap.observe(seconds)
        self._tick()

    def mean_handle_time(self) -> float:
        return self.talk.mean() + self.wrap.mean()

    def wrap_free_table(self, ages: FloatArray, horizons: FloatArray) -> FloatArray:
        """P(an agent 'age' seconds into wrap-up is free within h)."""
        s_now = self.wrap.survival(ages)
        later = self.wrap.survival(ages[:, None] + horizons[None, :])
        frac = later / np.maximum(s_now, _EPS)[:, None]
        return np.clip(1.0 - frac, 0.0, 1.0)

    def talk_free_table(self, ages: FloatArray, horizons: FloatArray,
                        wrap_points: int = 5) -> FloatArray:
        """P(an agent 'age' seconds into a call has finished talk *and* wrap within h).

        Wrap is folded in as an equal-weight mixture of its quantiles, which
        is exact enough for a fixed wrap and cheap for a variable one.
        """
        probs = (np.arange(wrap_points) + 0.5) / wrap_points
        wraps = self.wrap.quantiles(probs)
        s_now = np.maximum(self.talk.survival(ages), _EPS)
        out = np.zeros((ages.size, horizons.size))
        for w in wraps:
            remaining = np.maximum(horizons - w, 0.0)
            later = self.talk.survival(ages[:, None] + remaining[None, :])
            ended = 1.0 - later / s_now[:, None]
            ended[:, horizons <= w] = 0.0
            out += ended
        return np.clip(out / wrap_points, 0.0, 1.0)


class Estimates:
    """Bundle handed to pacing strategies together with the live snapshot."""

    def __init__(self, ring: RingEstimator | None = None,
                 service: ServiceEstimator | None = None) -> None:
        self.ring = ring if ring is not None else RingEstimator()
        self.service = service if service is not None else ServiceEstimator()

    @property
    def version(self) -> tuple[int, int]:
        return self.ring.version, self.service.version
