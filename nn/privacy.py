"""Privacy accounting for DP-SGD with Google's `dp-accounting` (RDP and PLD accountants).

Two ways batches can be drawn, and what each proves:

- "poisson": every example joins each step independently with probability q = batch / n
  and nobody learns who joined. This is what TensorFlow Privacy's compute_dp_sgd_privacy
  and Opacus report (a Poisson-subsampled Gaussian per step), and what `dp_sgd_epsilon`
  reproduces to 1e-9. nn.DPSGD(sampling="poisson") runs exactly this mechanism (below).
- "public-shuffle" (nn.fit's default): a seeded permutation cuts each epoch into
  fixed-size batches, and the permutation is public to the parties, so everybody knows
  which step used which row and subsampling amplifies nothing. What is proven then:
  replacing one row changes the clipped gradient sum of one step per epoch by at most
  2 * l2_norm_clip, so the release is `epochs` adaptive compositions of a Gaussian
  mechanism with noise multiplier noise_multiplier / 2 (replace-one neighbours).
  Larger batches cost no privacy here, only fewer steps.

Why the Poisson accountant is exactly right for nn.DPSGD(sampling="poisson"). Each step
releases (to the parties, and through the model to its recipient) only
    R_t = sum_i b_i clip(g_i) + Z,   b_i ~ Bernoulli(q) independent, Z ~ noise(sigma C),
where the b_i are fresh secret bits (mpc.bernoulli: the XOR of every party's own random
words compared with a public threshold; no n - 1 parties and not the dealer learn them,
and the messages a party receives are distributed the same whatever they are), every
row's gradient is computed every step, and ||clip(g_i)|| <= C holds for any input,
fixed-point rounding included (nn.clip). Nothing else depends on the b_i: the batch size
sum b_i is never revealed (the sum is divided by the public expected size q n), no
control flow or message size depends on them. That is the sampled Gaussian mechanism of
Abadi et al. (CCS 2016, the moments accountant) and Mironov, Talwar, Zhang ("Renyi
Differential Privacy of the Sampled Gaussian Mechanism", 2019), whose RDP dp-accounting's
PoissonSampledDpEvent(q, GaussianDpEvent(sigma)) computes, under add-or-remove-one
neighbours, composed adaptively over the steps taken (later steps use the model of
earlier ones, as those analyses allow). q is the probability the bits actually have:
mpc.exact_probability(batch / n), an integer over 2^63, equal to batch / n itself for
q >= 2^-10 (sampling_probability). Neither fixed-size batches nor a shuffle is used, so
the gap Chua et al. found (shuffled batches accounted as Poisson) does not arise. What
remains between this and "exact": the bits come from AES-CTR keyed by OS seeds
(computationally, not perfectly, uniform), the noise is a discrete Gaussian (next
paragraph), and n is public (shapes of shared data are), as it is in TF Privacy and
Opacus, whose q = batch / n uses it too.

Shuffled batches with a *secret* order are not covered by either: the Poisson figure is
commonly quoted for them but can understate epsilon (Chua et al., "How Private are DP-SGD
Implementations?", ICML 2024).
The noise is a discrete Gaussian on the fixed-point grid (mpc.noise); dp-accounting has
no subsampled discrete-Gaussian event, so both modes use its Gaussian event. Without
subsampling ("public-shuffle") the Gaussian event is an upper bound for one discrete
Gaussian of the same sigma and integer shifts (Canonne, Kamath, Steinke 2020: its Renyi
divergences are at most the continuous one's). With `colluders` < n - 1 the noise that
protects is a sum of several discrete Gaussians, which is close to, not exactly, a
discrete Gaussian (Kairouz, Liu, Steinke 2021 bound the gap; negligible for the per-party
sigmas of DP-SGD, thousands of grid units, but not zero). The PLD accountant is used as
dp-accounting computes it for the continuous Gaussian. The Poisson-subsampled bound is
proven for the continuous Gaussian. Neighbours: "poisson" reports add-or-remove-one (as
TF Privacy), "public-shuffle" replace-one, which is the stronger notion.
"""

from __future__ import annotations

import math

import dp_accounting
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant

import mpc

SAMPLINGS = ("poisson", "public-shuffle")
ACCOUNTANTS = ("rdp", "pld")
# the Renyi orders of TF Privacy's compute_dp_sgd_privacy_lib, so its values are reproduced
TF_PRIVACY_ORDERS = ([1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0, 4.5]
                     + list(range(5, 64)) + [128, 256, 512])


def _new_accountant(kind: str):
    """A fresh dp-accounting accountant (add-or-remove-one neighbours: the replace-one
    case is expressed as a halved noise multiplier in dp_sgd_event, so that both
    accountants read the event the same way)."""
    if kind == "rdp":
        return rdp_privacy_accountant.RdpAccountant(TF_PRIVACY_ORDERS)
    if kind == "pld":
        return pld_privacy_accountant.PLDAccountant()
    raise ValueError(f"accountant must be one of {ACCOUNTANTS}, got {kind!r}")


def dp_sgd_event(n: int, batch_size: int, noise_multiplier: float, steps: int,
                 sampling: str) -> dp_accounting.DpEvent:
    """The DpEvent of `steps` DP-SGD steps (see the module docstring for `sampling`)."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    if not 0 < batch_size <= n:
        raise ValueError(f"need 0 < batch_size <= n, got batch_size={batch_size}, n={n}")
    if noise_multiplier == 0:
        return dp_accounting.NonPrivateDpEvent()
    if sampling == "poisson":
        step = dp_accounting.PoissonSampledDpEvent(sampling_probability(n, batch_size),
                                                   dp_accounting.GaussianDpEvent(noise_multiplier))
        return dp_accounting.SelfComposedDpEvent(step, steps)
    epochs = math.ceil(steps / steps_per_epoch(n, batch_size))  # times each row was used
    # replace-one: sensitivity 2 clip, so the noise is noise_multiplier / 2 sensitivities
    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.GaussianDpEvent(noise_multiplier / 2), epochs)


def sampling_probability(n: int, batch_size: int) -> float:
    """Poisson sampling's q for an expected batch of batch_size out of n, as the secret
    bits implement it (mpc.exact_probability: batch_size / n itself for q >= 2^-10)."""
    return mpc.exact_probability(batch_size / n)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """nn.fit's steps in an epoch: the last, shorter batch is a step too."""
    return math.ceil(n / batch_size)


def epsilon_for_steps(n: int, batch_size: int, noise_multiplier: float, steps: int,
                      delta: float, *, sampling: str, accountant: str = "rdp") -> float:
    """Epsilon at `delta` after `steps` steps (math.inf without noise)."""
    event = dp_sgd_event(n, batch_size, noise_multiplier, steps, sampling)
    if steps == 0:
        return 0.0
    if isinstance(event, dp_accounting.NonPrivateDpEvent):
        return math.inf
    return float(_new_accountant(accountant).compose(event).get_epsilon(delta))


def dp_sgd_epsilon(n: int, batch_size: int, noise_multiplier: float, epochs: float,
                   delta: float, *, sampling: str, accountant: str = "rdp") -> float:
    """Epsilon of `epochs` epochs of DP-SGD. `sampling` has no default, since the two
    differ by several times: "public-shuffle" is what nn.fit does (ceil(epochs) epochs of
    ceil(n / batch_size) steps); "poisson" is TensorFlow Privacy's compute_dp_sgd_privacy
    (steps = ceil(epochs n / batch_size), sampling probability batch_size / n).
    Example:
        dp_sgd_epsilon(60000, 150, 1.3, 15, 1e-5, sampling="poisson")  # 0.7242234026...
    """
    if sampling == "public-shuffle":
        steps = math.ceil(epochs) * steps_per_epoch(n, batch_size)
    else:
        steps = math.ceil(epochs * n / batch_size)
    return epsilon_for_steps(n, batch_size, noise_multiplier, steps, delta,
                             sampling=sampling, accountant=accountant)


def noise_multiplier_for(target_epsilon: float, delta: float, n: int, batch_size: int,
                         epochs: float, *, sampling: str, accountant: str = "rdp",
                         rel_tol: float = 1e-3) -> float:
    """The smallest noise multiplier (to within `rel_tol`) whose epsilon at `delta` is at
    most `target_epsilon`. Bisection keeping an upper end that meets the target, so the
    answer never overshoots the budget. Example:
        noise_multiplier_for(1.0, 1e-5, 60000, 256, 15, sampling="public-shuffle")
    """
    if not target_epsilon > 0:
        raise ValueError(f"target_epsilon must be > 0, got {target_epsilon!r}")

    def eps(sigma: float) -> float:
        return dp_sgd_epsilon(n, batch_size, sigma, epochs, delta, sampling=sampling,
                              accountant=accountant)

    low, high = 0.0, 1.0
    while eps(high) > target_epsilon:
        low, high = high, 2 * high
        if high > 1e6:
            raise ValueError(f"no noise multiplier up to 1e6 reaches epsilon {target_epsilon}")
    while high - low > rel_tol * high:
        middle = (low + high) / 2
        if eps(middle) <= target_epsilon:
            high = middle
        else:
            low = middle
    return high


class PrivacyAccountant:
    """Steps taken so far -> epsilon at a fixed delta, for one DP-SGD configuration.
    Example:
        acc = PrivacyAccountant(n=455, batch_size=32, noise_multiplier=1.1, delta=1e-5)
        acc.step(); acc.epsilon()
    """

    def __init__(self, n: int, batch_size: int, noise_multiplier: float, delta: float, *,
                 sampling: str = "public-shuffle", accountant: str = "rdp"):
        dp_sgd_event(n, batch_size, noise_multiplier, 0, sampling)  # validates
        _new_accountant(accountant)
        self.n, self.batch_size, self.noise_multiplier = n, batch_size, noise_multiplier
        self.delta, self.sampling, self.accountant = delta, sampling, accountant
        self.steps = 0

    def step(self, count: int = 1) -> None:
        self.steps += count

    def epsilon(self) -> float:
        return epsilon_for_steps(self.n, self.batch_size, self.noise_multiplier, self.steps,
                                 self.delta, sampling=self.sampling, accountant=self.accountant)

    def metrics(self) -> dict:
        return {"epsilon": self.epsilon(), "delta": self.delta}
