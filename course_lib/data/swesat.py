"""SweSAT (Swedish Scholastic Aptitude Test) responses from irtorch: 5000 learners x 160 items.

Derived in chapter 05, section 2; card: ``datasets/swesat.md``. irtorch ships the *chosen option*
of 5000 test takers on the 80 quantitative and 80 verbal multiple-choice items of one SweSAT
administration, plus each item's answer key. We score chosen == key as 1 and a wrong option as 0,
and keep the 5,129 unanswered cells (NaN in irtorch's tensors) as NaN. (irtorch's own
``swedish_sat_binary()`` turns a missing answer into "wrong"; we deliberately do not use it.)

A fact the data card documents and chapter 05 shows: the quantitative and the verbal tensors are
two *independent* samples of 5000 test takers that irtorch concatenates row by row. A row's
quantitative and verbal scores correlate at 0.004 (two halves of one section: 0.87), so a
"learner" of the 160-item matrix is a pair of two people, and the data are two-dimensional by
construction. ``section="quantitative"`` or ``"verbal"`` loads one half, a genuine 5000 x 80 test.
"""

from __future__ import annotations

import importlib.metadata

import pandas as pd
import torch

from course_lib.data.responses import ResponseData, validate_responses, verify_checksum

__all__ = ["load_swesat", "SWESAT_SHA256", "SWESAT_SHAPE"]

#: sha256 of `course_lib.data.responses.responses_checksum` of the scored matrix (irtorch 0.5.6).
SWESAT_SHA256 = "9fc95c5a4d26a58e9724e05ace85fb02ddab9a4cf5731a289183a3de9ef88f95"
SWESAT_SHAPE = (5000, 160)


def load_swesat(verify: bool = True, section: str = "both") -> ResponseData:
    """Load SweSAT as ``responses [5000, 160]`` (1 correct, 0 wrong, NaN missing) and item metadata.

    ``section``: "both" (160 items), "quantitative" (the first 80) or "verbal" (the last 80); the
    checksum is always verified on the full matrix.

    ``items`` has one row per item: ``name`` (q01..q80, v01..v80), ``group`` ("quantitative" for
    columns 0-79, "verbal" for 80-159), ``key`` (the correct option, 0-based), ``p_correct`` (share
    correct among those who answered) and ``n_missing``. With ``verify`` the matrix must match the
    checksum on ``datasets/swesat.md`` (else `ChecksumError`). Derived in chapter 05, section 2.
    """
    if section not in ("both", "quantitative", "verbal"):
        raise ValueError(f"section must be 'both', 'quantitative' or 'verbal', got {section!r}")
    try:
        from irtorch import load_dataset
    except ImportError as err:  # pragma: no cover - declared dependency
        raise ImportError("SweSAT ships with irtorch: pip install 'irtorch>=0.5.6'") from err
    chosen, keys = load_dataset.swedish_sat()
    chosen = torch.as_tensor(chosen, dtype=torch.float32)
    if tuple(chosen.shape) != SWESAT_SHAPE or len(keys) != SWESAT_SHAPE[1]:
        raise ValueError(f"irtorch returned SweSAT with shape {tuple(chosen.shape)} and {len(keys)} keys; "
                         f"expected {SWESAT_SHAPE} and 160 (irtorch 0.5.6)")
    missing = torch.isnan(chosen) | (chosen < 0)  # irtorch codes missing as NaN (older data used -1)
    responses = (chosen == torch.tensor(keys, dtype=torch.float32)).float()
    responses[missing] = float("nan")
    responses = validate_responses(responses, name="SweSAT")
    checksum = (verify_checksum(responses, SWESAT_SHA256, dataset="SweSAT", card="datasets/swesat.md")
                if verify else "")
    n_half = SWESAT_SHAPE[1] // 2
    items = pd.DataFrame({
        "name": [f"q{j + 1:02d}" for j in range(n_half)] + [f"v{j + 1:02d}" for j in range(n_half)],
        "group": ["quantitative"] * n_half + ["verbal"] * n_half,
        "key": list(keys),
        "p_correct": torch.nanmean(responses, 0).numpy(),
        "n_missing": torch.isnan(responses).sum(0).numpy(),
    })
    version = importlib.metadata.version("irtorch")
    name = "swesat"
    if section != "both":
        cols = slice(0, n_half) if section == "quantitative" else slice(n_half, 2 * n_half)
        responses = responses[:, cols].contiguous()
        items = items.iloc[cols].reset_index(drop=True)
        name = f"swesat_{section}"
    return ResponseData(name=name, responses=responses, items=items, checksum=checksum,
                        source=f"irtorch {version}: irtorch.load_dataset.swedish_sat()")
