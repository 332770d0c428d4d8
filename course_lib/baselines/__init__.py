"""The strongest non-meta competitors, one file each: ``irt`` (2PL, chapters 05/07), ``item_mean``,
``logistic`` (per-learner, no transfer), ``fine_tuning`` (transfer learning), ``popularity``,
``matrix_factorization`` and ``mixed_model`` (chapter 06)."""
