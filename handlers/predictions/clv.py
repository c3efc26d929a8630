"""Predicted purchases, P(alive) and CLV per customer: BG/NBD with Gamma-Gamma spend.

BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way") models the number
of repeat purchase days; Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV: using
iso-value curves") the mean spend of a repeat day. Both are fitted per store by maximum
likelihood with the closed-form log-likelihoods written in log space, vectorised with numpy
and optimised by scipy over log-parameters (so every parameter stays positive).

Everything here is pure: arrays in, frozen dataclasses out, nothing read from or written to
the database, so the nightly run, the CLI and the tests call the same functions.

Data shape: one transaction per customer per calendar day (the caller gives day numbers in
the store's time zone); x = repeat purchase days, t_x = last day - first day, T = as-of
day - first day, all divided by the unit (1 for days, 7 for weeks). Time-dependent results
(expected purchases, CLV) take horizons in the same unit as the fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaincinv, betaln, digamma, expit, gammaln, hyp2f1, roots_legendre

UNIT_DAYS = {"days": 1.0, "weeks": 7.0}

# Defaults of the "not enough history" rule: below these a fit is noise, not a forecast.
MIN_REPEAT_BUYERS = 200
MIN_HISTORY_DAYS = 90
# Above this |correlation| of frequency and mean spend, Gamma-Gamma's independence
# assumption is visibly broken and the spend forecast is flagged.
MAX_INDEPENDENCE_CORRELATION = 0.3
_LOG_BOUND = 20.0  # log-parameters stay within e^-20 .. e^20


# --------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class Summary:
    """Per customer: the sufficient statistics of both models.

    `mean_repeat_spend` is the mean spend of the repeat days (the first day left out); NaN
    for customers without a repeat day. Times are in the unit of `unit_days`.
    """

    customer: np.ndarray
    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray
    mean_repeat_spend: np.ndarray
    unit_days: float
    history_days: int  # as-of day minus the earliest first purchase day

    @property
    def customers(self) -> int:
        return int(self.x.size)

    @property
    def repeat_buyers(self) -> int:
        return int(np.count_nonzero(self.x > 0))


def summarise(customer, day, amount=None, *, as_of_day: int, unit_days: float = 1.0) -> Summary:
    """Collapse transactions to one per customer per day and summarise each customer.

    `customer` may be any sortable ids (ints or strings), `day` integer day numbers in the
    store's time zone, `amount` each row's spend (summed per customer-day). Rows after
    `as_of_day` are ignored. Sorting once and cutting at the boundaries keeps it linear in
    memory and fast for millions of rows.
    """
    customer = np.asarray(customer)
    day = np.asarray(day, dtype=np.int64)
    amount = (np.zeros(day.shape, dtype=np.float64) if amount is None
              else np.asarray(amount, dtype=np.float64))
    keep = day <= as_of_day
    if not keep.all():
        customer, day, amount = customer[keep], day[keep], amount[keep]
    if day.size == 0:
        empty = np.zeros(0)
        return Summary(customer[:0], empty, empty, empty, empty, float(unit_days), 0)

    order = np.lexsort((day, customer))
    c, d, m = customer[order], day[order], amount[order]
    new_day = np.ones(d.size, dtype=bool)
    new_day[1:] = (c[1:] != c[:-1]) | (d[1:] != d[:-1])
    starts = np.flatnonzero(new_day)
    dc, dd = c[starts], d[starts]
    dm = np.add.reduceat(m, starts)  # one transaction per customer-day: the day's total

    new_customer = np.ones(dc.size, dtype=bool)
    new_customer[1:] = dc[1:] != dc[:-1]
    firsts = np.flatnonzero(new_customer)
    ends = np.append(firsts[1:], dc.size)
    first_day, last_day = dd[firsts], dd[ends - 1]
    x = (ends - firsts - 1).astype(np.float64)
    repeat_spend = np.add.reduceat(dm, firsts) - dm[firsts]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_repeat = np.where(x > 0, repeat_spend / x, np.nan)
    unit = float(unit_days)
    return Summary(
        customer=dc[firsts], x=x,
        t_x=(last_day - first_day) / unit, T=(as_of_day - first_day) / unit,
        mean_repeat_spend=mean_repeat, unit_days=unit,
        history_days=int(as_of_day - first_day.min()),
    )


def not_enough_history(summary: Summary, *, min_repeat_buyers: int = MIN_REPEAT_BUYERS,
                       min_history_days: int = MIN_HISTORY_DAYS) -> str | None:
    """Why this store cannot be fitted yet, or None when it can.

    Too few repeat buyers leave the dropout process unidentified; too short a history
    cannot tell a slow buyer from a lost one. A reason replaces numbers rather than
    showing a confident-looking forecast built on noise.
    """
    reasons = []
    if summary.repeat_buyers < min_repeat_buyers:
        reasons.append(f"{summary.repeat_buyers} repeat buyers (at least {min_repeat_buyers} "
                       "needed)")
    if summary.history_days < min_history_days:
        reasons.append(f"{summary.history_days} days of orders (at least {min_history_days} "
                       "needed)")
    if not reasons:
        return None
    return "not enough history: " + " and ".join(reasons)


def compress(*columns: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
    """Identical rows collapsed: (unique columns, counts, inverse index).

    Customers share (x, t_x, T) often (all one-time buyers of a day do), so likelihoods and
    scores are computed once per distinct row and weighted or broadcast back.
    """
    stacked = np.ascontiguousarray(np.column_stack([np.asarray(c, dtype=np.float64)
                                                    for c in columns]))
    rows = stacked.view(np.dtype((np.void, stacked.dtype.itemsize * stacked.shape[1])))
    _, first, inverse, counts = np.unique(rows.ravel(), return_index=True,
                                          return_inverse=True, return_counts=True)
    unique = stacked[first]
    return tuple(unique[:, i] for i in range(unique.shape[1])), counts.astype(np.float64), \
        inverse.ravel()


# --------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class Convergence:
    """What the optimiser said: an operator reads this before trusting the numbers."""

    success: bool
    iterations: int
    message: str


@dataclass(frozen=True)
class BgNbdFit:
    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    customers: int
    convergence: Convergence
    warnings: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class GammaGammaFit:
    p: float
    q: float
    gamma: float
    log_likelihood: float
    customers: int
    correlation: float  # Pearson, frequency vs mean repeat spend, over the repeat buyers
    convergence: Convergence
    warnings: tuple[str, ...] = field(default=())

    @property
    def mean_spend(self) -> float:
        """Population mean spend per transaction, p*gamma/(q-1); infinite when q <= 1."""
        return self.p * self.gamma / (self.q - 1.0) if self.q > 1.0 else float("inf")


def _bgnbd_terms(params, x, t_x, T, grad: bool):
    """Per-row log-likelihood of BG/NBD (and its gradient in the parameters).

    L = B(a, b+x)/B(a, b) * G(r+x) a^r / (G(r) (alpha+T)^(r+x))
        + [x > 0] B(a+1, b+x-1)/B(a, b) * G(r+x) alpha^r / (G(r) (alpha+t_x)^(r+x))
    summed in log space (log-sum-exp of the two terms) so that large x or T never
    overflow.
    """
    r, alpha, a, b = params
    repeat = x > 0
    x1 = np.where(repeat, x, 1.0)  # keeps the unused second term finite for x == 0
    lb = betaln(a, b)
    log_at, log_atx = np.log(alpha + T), np.log(alpha + t_x)
    base = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    first = betaln(a, b + x) - lb - (r + x) * log_at
    second = np.where(repeat, betaln(a + 1.0, b + x1 - 1.0) - lb - (r + x) * log_atx, -np.inf)
    mix = np.logaddexp(first, second)
    ll = base + mix
    if not grad:
        return ll, None
    w1 = np.exp(first - mix)  # share of the first term; the second's is 1 - w1
    w2 = 1.0 - w1
    d_ab = digamma(a + b)
    d_abx = digamma(a + b + x)
    g_r = digamma(r + x) - digamma(r) + np.log(alpha) - w1 * log_at - w2 * log_atx
    g_alpha = r / alpha - (r + x) * (w1 / (alpha + T) + w2 / (alpha + t_x))
    g_a = (w1 * (d_ab - d_abx)
           + w2 * np.where(repeat, digamma(a + 1.0) - digamma(a) + d_ab - d_abx, 0.0))
    d_b = digamma(b)
    g_b = (w1 * (digamma(b + x) - d_abx - d_b + d_ab)
           + w2 * np.where(repeat, digamma(b + x1 - 1.0) - d_abx - d_b + d_ab, 0.0))
    return ll, (g_r, g_alpha, g_a, g_b)


def _fit_log_params(objective, start: np.ndarray) -> tuple[np.ndarray, Convergence]:
    """L-BFGS-B with the analytic gradient; Nelder-Mead from there if it stops early.

    Bounds on the log-parameters keep exp() finite; a failed line search (flat or noisy
    likelihood) is retried by the derivative-free method before giving up.
    """
    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * start.size
    res = minimize(objective, start, jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-9})
    iterations = int(res.nit)
    if not res.success:
        nm = minimize(lambda th: objective(th)[0], res.x, method="Nelder-Mead",
                      bounds=bounds, options={"maxiter": 4000, "xatol": 1e-9, "fatol": 1e-12})
        iterations += int(nm.nit)
        if nm.fun <= res.fun:
            res = nm
    return res.x, Convergence(bool(res.success), iterations, str(res.message))


def bgnbd_log_likelihood(r: float, alpha: float, a: float, b: float, x, t_x, T,
                         weights=None) -> float:
    """Total log-likelihood of BG/NBD at the given parameters (rows weighted by count)."""
    x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
    ll, _ = _bgnbd_terms((r, alpha, a, b), x, t_x, T, grad=False)
    return float(np.sum(ll if weights is None else ll * np.asarray(weights)))


def fit_bgnbd(x, t_x, T, weights=None) -> BgNbdFit:
    """Maximum-likelihood BG/NBD on per-customer (x, t_x, T).

    Without `weights`, identical rows are collapsed first (a million customers become a
    few hundred thousand distinct rows); with `weights`, the rows are taken as already
    collapsed, each counted `weights[i]` times.
    """
    x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
    if weights is None:
        (x, t_x, T), weights, _ = compress(x, t_x, T)
    w = np.asarray(weights, dtype=np.float64)
    total = float(w.sum())
    if total == 0:
        raise ValueError("no customers to fit")

    def objective(theta):
        params = np.exp(theta)
        ll, g = _bgnbd_terms(params, x, t_x, T, grad=True)
        value = -float(np.dot(w, ll)) / total
        if not np.isfinite(value):
            return 1e300, np.zeros(4)
        grad = -np.array([np.dot(w, gi) for gi in g]) * params / total
        return value, grad

    # alpha is a time scale: start it at the mean observation length per repeat day.
    mean_x = float(np.dot(w, x)) / total
    mean_T = float(np.dot(w, T)) / total
    alpha0 = max(mean_T / max(mean_x, 0.1), 1e-3)
    start = np.log(np.array([1.0, alpha0, 1.0, 1.0]))
    theta, convergence = _fit_log_params(objective, start)
    r, alpha, a, b = (float(v) for v in np.exp(theta))
    ll = bgnbd_log_likelihood(r, alpha, a, b, x, t_x, T, w)
    warnings = []
    if not convergence.success:
        warnings.append(f"BG/NBD fit did not converge: {convergence.message}")
    if np.any(np.abs(theta) >= _LOG_BOUND - 1e-6):
        warnings.append("a BG/NBD parameter reached its bound; the data barely identify it")
    if a + b > 1e4:
        warnings.append(f"a + b = {a + b:,.0f}: customers hardly differ in how likely they are "
                        f"to drop out (about {a / (a + b):.1%} after each purchase); the "
                        "forecasts treat it as one probability")
    return BgNbdFit(r, alpha, a, b, ll, int(round(total)), convergence, tuple(warnings))


def _gg_terms(params, x, m, grad: bool):
    """Per-buyer log-density of the mean repeat spend m over x repeat days.

    f(m | x) = G(px+q) / (G(px) G(q)) * gamma^q m^(px-1) x^(px) / (gamma + m x)^(px+q)
    """
    p, q, g = params
    px = p * x
    log_gmx = np.log(g + m * x)
    log_m, log_x = np.log(m), np.log(x)
    ll = (gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(g)
          + (px - 1.0) * log_m + px * log_x - (px + q) * log_gmx)
    if not grad:
        return ll, None
    d_pxq = digamma(px + q)
    g_p = x * (d_pxq - digamma(px) + log_m + log_x - log_gmx)
    g_q = d_pxq - digamma(q) + np.log(g) - log_gmx
    g_g = q / g - (px + q) / (g + m * x)
    return ll, (g_p, g_q, g_g)


def fit_gamma_gamma(x, mean_spend) -> GammaGammaFit:
    """Maximum-likelihood Gamma-Gamma on the repeat buyers' (x, mean repeat spend).

    Customers without a repeat day or with a non-positive mean spend are left out (the
    model says nothing about them). The Pearson correlation of x and mean spend is
    reported: the model assumes spend does not depend on frequency, and a clear
    correlation means its spend forecast should not be trusted.
    """
    x = np.asarray(x, dtype=np.float64)
    m = np.asarray(mean_spend, dtype=np.float64)
    keep = (x > 0) & np.isfinite(m) & (m > 0)
    x, m = x[keep], m[keep]
    n = int(x.size)
    if n < 2:
        raise ValueError("Gamma-Gamma needs at least two repeat buyers with positive spend")
    corr = (float(np.corrcoef(x, m)[0, 1])
            if np.ptp(x) > 0 and np.ptp(m) > 0 else 0.0)

    def objective(theta):
        params = np.exp(theta)
        ll, g = _gg_terms(params, x, m, grad=True)
        value = -float(ll.sum()) / n
        if not np.isfinite(value):
            return 1e300, np.zeros(3)
        return value, -np.array([gi.sum() for gi in g]) * params / n

    # Start at the method-of-moments-like guess: shape 1 per transaction, mean spend matched.
    start = np.log(np.array([1.0, 2.0, float(np.mean(m))]))
    theta, convergence = _fit_log_params(objective, start)
    p, q, g = (float(v) for v in np.exp(theta))
    ll = float(_gg_terms((p, q, g), x, m, grad=False)[0].sum())
    warnings = []
    if not convergence.success:
        warnings.append(f"Gamma-Gamma fit did not converge: {convergence.message}")
    if abs(corr) > MAX_INDEPENDENCE_CORRELATION:
        warnings.append(f"frequency and spend are correlated ({corr:.2f}): Gamma-Gamma assumes "
                        "they are independent, its spend forecast is biased")
    if q <= 1.0:
        warnings.append("q <= 1: the population mean spend is undefined")
    elif q > 1e4:
        warnings.append(f"q = {q:,.0f}: customers hardly differ in what they spend per purchase "
                        f"(about {p * g / (q - 1):,.2f}); each one's own mean counts for little")
    return GammaGammaFit(p, q, g, ll, n, corr, convergence, tuple(warnings))


# --------------------------------------------------------------------------- predictions


def _log_alive_odds_against(fit: BgNbdFit, x, t_x, T):
    """log of  [x>0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x): dead-vs-alive odds."""
    repeat = x > 0
    x1 = np.where(repeat, x, 1.0)
    lo = (np.log(fit.a) - np.log(fit.b + x1 - 1.0)
          + (fit.r + x) * (np.log(fit.alpha + T) - np.log(fit.alpha + t_x)))
    return np.where(repeat, lo, -np.inf)


def p_alive(fit: BgNbdFit, x, t_x, T) -> np.ndarray:
    """P(still a customer | x, t_x, T).

    BG/NBD lets a customer drop out only right after a purchase, so a customer without a
    repeat day is alive with probability 1 under the model; churn for every customer,
    one-time buyers included, is `p_no_purchase`.
    """
    x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
    return expit(-_log_alive_odds_against(fit, x, t_x, T))


def p_no_purchase(fit: BgNbdFit, t, x, t_x, T) -> np.ndarray:
    """P(no purchase in the next t | x, t_x, T): churn as a merchant means it.

    A customer buys nothing in (T, T+t] if they have dropped out, or if they are alive and
    their Poisson purchases leave the gap empty (no purchase, no chance to drop out). Alive
    at T, the purchase rate's posterior is gamma(r+x, alpha+T), so the gap stays empty with
    probability ((alpha+T)/(alpha+T+t))^(r+x). Unlike 1 - P(alive), which is 0 for every
    one-time buyer under BG/NBD, this is defined and informative for all customers.
    """
    x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
    t = np.asarray(t, dtype=np.float64)
    alive = p_alive(fit, x, t_x, T)
    empty = np.exp((fit.r + x) * (np.log(fit.alpha + T) - np.log(fit.alpha + T + t)))
    return (1.0 - alive) + alive * empty


def expected_purchases(fit: BgNbdFit, t, x, t_x, T) -> np.ndarray:
    """E[purchases in the next t | x, t_x, T] (conditional expectation of BG/NBD).

    The published form multiplies ((alpha+T)/(alpha+T+t))^(r+x) by 2F1(r+x, b+x;
    a+b+x-1; z), z = t/(alpha+T+t): the power underflows and the 2F1 blows up as r+x grows.
    Euler's transformation 2F1(A, B; C; z) = (1-z)^(C-A-B) 2F1(C-A, C-B; C; z) folds the two
    into (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z), whose first two arguments no longer
    grow with x, so the series converges quickly and stays finite for heavy buyers.
    """
    x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
    t = np.asarray(t, dtype=np.float64)
    r, alpha, a, b = fit.r, fit.alpha, fit.a, fit.b
    if abs(a - 1.0) < 1e-8:  # removable singularity of the closed form
        a = 1.0 + 1e-8
    z = t / (alpha + T + t)
    c = a + b + x - 1.0
    f = np.array(hyp2f1(a + b - 1.0 - r, a - 1.0, c, z), dtype=np.float64)
    bad = ~np.isfinite(f)
    if np.any(bad):  # fall back to the untransformed form where scipy failed
        zb = np.broadcast_to(z, f.shape)[bad]
        xb = np.broadcast_to(x, f.shape)[bad]
        with np.errstate(invalid="ignore", over="ignore"):
            f[bad] = (hyp2f1(r + xb, b + xb, a + b + xb - 1.0, zb)
                      * (1.0 - zb) ** (r + xb - a + 1.0))
    # 1 - (1-z)^(a-1) f, split so that neither part cancels when t is small.
    with np.errstate(invalid="ignore", over="ignore"):
        log_power = (a - 1.0) * np.log1p(-z)
        bracket = -np.expm1(log_power) + np.exp(log_power) * (1.0 - f)
        value = (c / (a - 1.0)) * bracket * expit(-_log_alive_odds_against(fit, x, t_x, T))
    bad = ~np.isfinite(value)
    if np.any(bad):  # e.g. a + b in the thousands: the 2F1 series fails, integrate instead
        value = np.array(value, dtype=np.float64)
        tb, xb, txb, Tb = (np.broadcast_to(v, value.shape)[bad] for v in (t, x, t_x, T))
        value[bad] = _expected_by_quadrature(fit, tb, xb, txb, Tb)
    return np.maximum(value, 0.0)  # rounding can leave -1e-17 for tiny t


_NODES, _WEIGHTS = roots_legendre(24)


def _expected_by_quadrature(fit: BgNbdFit, t, x, t_x, T) -> np.ndarray:
    """E[purchases in the next t] by integrating over the dropout probability p.

    Alive at T, p's posterior is beta(a, b+x) and the rate's gamma(r+x, alpha+T); a
    customer buying at rate lambda until a dropout after each purchase with probability p
    buys (1 - exp(-lambda p t)) / p in t on average, and with lambda integrated out,
    (1 - ((alpha+T)/(alpha+T+p t))^(r+x)) / p. That is averaged over p by Gauss-Legendre
    on the beta's quantile scale (24 nodes; smooth and bounded in p) and multiplied by
    P(alive). Used where the closed form fails: a large a + b (the data show hardly any
    spread in dropout between customers) sends the 2F1 series beyond scipy's reach.
    """
    u = (_NODES + 1.0) / 2.0
    p = betaincinv(fit.a, fit.b + x[:, None], u[None, :])
    p = np.maximum(p, 1e-300)
    log_ratio = np.log(fit.alpha + T[:, None]) - np.log(fit.alpha + T[:, None] + p * t[:, None])
    g = -np.expm1((fit.r + x[:, None]) * log_ratio) / p
    return p_alive(fit, x, t_x, T) * (g @ (_WEIGHTS / 2.0))


def expected_purchases_new(fit: BgNbdFit, t) -> np.ndarray:
    """E[X(t)]: repeat purchases in the first t after a first purchase, for anyone.

    Used for cohort forecasts (the total over customers acquired at different times).
    """
    t = np.asarray(t, dtype=np.float64)
    r, alpha, a, b = fit.r, fit.alpha, fit.a, fit.b
    if abs(a - 1.0) < 1e-8:
        a = 1.0 + 1e-8
    z = t / (alpha + t)
    # Euler's transformation as above: (alpha/(alpha+t))^r 2F1(r, b; a+b-1; z)
    # = (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b-1; z).
    power = np.exp((a - 1.0) * np.log1p(-z))
    return (a + b - 1.0) / (a - 1.0) * (1.0 - power * hyp2f1(a + b - 1.0 - r, a - 1.0,
                                                             a + b - 1.0, z))


def expected_spend(fit: GammaGammaFit, x, mean_spend) -> np.ndarray:
    """E[spend per transaction | x, mean repeat spend]: the customer's own mean shrunk
    towards the population mean, weighted by how many repeat days back it; customers
    without a repeat day get the population mean."""
    x = np.asarray(x, dtype=np.float64)
    m = np.asarray(mean_spend, dtype=np.float64)
    repeat = (x > 0) & np.isfinite(m)
    px = fit.p * x
    with np.errstate(invalid="ignore"):
        own = (fit.gamma + np.where(repeat, m, 0.0) * x) * fit.p / (px + fit.q - 1.0)
    return np.where(repeat, own, fit.mean_spend)


def discounted_purchases(bg: BgNbdFit, horizon: float, x, t_x, T, *,
                         annual_discount: float = 0.0, unit_days: float = 1.0) -> np.ndarray:
    """Expected purchases in the next `horizon` (fit's unit), each discounted to today.

    A yearly rate is what a merchant knows; the horizon is cut into months (365/12 days,
    the last one partial) and each month's expected purchases are discounted by
    (1 + d)^(-years to the month's end). Monthly steps are fine enough for 90 or 365 days.
    With d = 0 this is plain `expected_purchases`.
    """
    if annual_discount == 0.0:
        return expected_purchases(bg, horizon, x, t_x, T)
    if horizon <= 0:
        raise ValueError("horizon must be positive")
    month = 365.0 / 12.0 / unit_days
    ends = np.append(np.arange(month, horizon - 1e-9, month), horizon)
    total = previous = 0.0
    for end in ends:
        cumulative = expected_purchases(bg, end, x, t_x, T)
        years = end * unit_days / 365.0
        total = total + (cumulative - previous) * (1.0 + annual_discount) ** (-years)
        previous = cumulative
    return np.asarray(total)


def predicted_clv(bg: BgNbdFit, gg: GammaGammaFit, horizon: float, x, t_x, T, mean_spend, *,
                  annual_discount: float = 0.0, unit_days: float = 1.0) -> np.ndarray:
    """Predicted revenue over the next `horizon` (fit's unit): expected (optionally
    discounted) purchases times expected spend per purchase."""
    purchases = discounted_purchases(bg, horizon, x, t_x, T, annual_discount=annual_discount,
                                     unit_days=unit_days)
    return purchases * expected_spend(gg, x, mean_spend)


@dataclass(frozen=True)
class Scores:
    """Per customer of a Summary, in its order."""

    customer: np.ndarray
    p_alive: np.ndarray
    expected: dict[int, np.ndarray]  # horizon in days -> expected purchases
    clv: dict[int, np.ndarray]  # horizon in days -> predicted revenue
    expected_spend: np.ndarray
    no_purchase: dict[int, np.ndarray] = field(default_factory=dict)  # days -> P(no purchase)


def score(bg: BgNbdFit, gg: GammaGammaFit | None, summary: Summary, *,
          purchase_days: tuple[int, ...] = (30, 90, 365), clv_days: tuple[int, ...] = (90, 365),
          annual_discount: float = 0.0, churn_days: tuple[int, ...] = (90,)) -> Scores:
    """Every prediction of the nightly run for all customers of `summary`.

    BG/NBD quantities depend only on (x, t_x, T), so they are computed once per distinct
    row and broadcast; CLV needs the customer's own spend and is computed per customer
    from those shared purchase forecasts. Without a Gamma-Gamma fit, CLV is left out.
    `churn_days` gives P(no purchase within that many days) (`p_no_purchase`).
    """
    (ux, utx, uT), _, inverse = compress(summary.x, summary.t_x, summary.T)
    unit = summary.unit_days
    alive = p_alive(bg, ux, utx, uT)[inverse]
    horizons = sorted(set(purchase_days) | set(clv_days))
    expected = {h: expected_purchases(bg, h / unit, ux, utx, uT)[inverse] for h in horizons}
    clv: dict[int, np.ndarray] = {}
    spend = np.full(summary.x.shape, np.nan)
    if gg is not None:
        spend = expected_spend(gg, summary.x, summary.mean_repeat_spend)
        for h in clv_days:
            purchases = (expected[h] if annual_discount == 0.0 else discounted_purchases(
                bg, h / unit, ux, utx, uT, annual_discount=annual_discount,
                unit_days=unit)[inverse])
            clv[h] = purchases * spend
    no_purchase = {h: p_no_purchase(bg, h / unit, ux, utx, uT)[inverse] for h in churn_days}
    return Scores(summary.customer, alive, {h: expected[h] for h in purchase_days}, clv, spend,
                  no_purchase)
