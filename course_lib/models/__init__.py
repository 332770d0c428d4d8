"""What is personalised: the learner and preference models that the meta-learners adapt.

``meta_irt`` (chapter 05: item parameters meta-learned, ability adapted), ``nearest_learners``
(chapter 05: metric-based, no adaptation), ``preference`` (chapter 06: the MeLU-style rating model).
"""
