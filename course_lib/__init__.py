"""course_lib: the library of the course "Meta-Learning for Personalized Learning".

One module per idea, each derived in a chapter notebook: ``device`` (00), ``tasks`` (01),
``distances`` and ``algorithms.protonet`` (02), ``algorithms.maml`` (03), ``algorithms.reptile``
and ``taylor`` (04), ``data``, ``baselines.irt``, ``learner_models`` (05), ``recommenders`` and
``baselines.recsys`` (06), ``cat`` and ``classroom`` (07). ``experiments`` holds the runnable
studies behind the chapters and ``bench`` the speed table against learn2learn.
"""

__version__ = "0.1.0"
