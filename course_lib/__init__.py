"""course_lib: the library of the course "Meta-Learning for Personalized Learning".

Read it as a map of the course, top to bottom (the layers import only downwards):

* ``experiments/``  thin studies behind the use-case chapters, one contract: ``run(config) -> Result``
                    (``experiments.common``), callable from a notebook or ``python -m``;
* ``adaptive/``     acting on a learner (07): adaptive testing (``cat``), the knowledge-tracing classroom;
* ``models/``       what is personalised (01, 05, 06): ``learner_model``, ``meta_irt``, ``nearest_learners``,
                    ``preference``;
* ``baselines/``    the non-meta competitors, one file each: ``irt``, ``item_mean``, ``logistic``,
                    ``fine_tuning``, ``popularity``, ``matrix_factorization``;
* ``algorithms/``   the meta-learners and their math on torch.func: ``functional`` (02-04), ``protonet``
                    (02), ``maml`` (03), ``reptile`` and ``taylor`` (04);
* foundations:      ``tasks`` (support/query batches and samplers, 01), ``distances`` (02), ``metrics``
                    (every metric and confidence interval), ``data/`` (loaders, generators), ``device``,
                    ``viz``, ``bench``, ``exercises/`` (the checks of each chapter's exercises).
"""
