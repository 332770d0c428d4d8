"""The strongest non-meta competitors, one file each: ``irt`` (2PL, chapters 05/07), ``mirt`` (multidimensional
IRT with EAP, chapter 05), ``item_mean``, ``logistic`` (per-learner, no transfer), ``fine_tuning`` (transfer
learning), ``popularity``, ``matrix_factorization`` and ``mixed_model`` (chapter 06)."""
