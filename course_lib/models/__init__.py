"""What is personalised: the learner and preference models that the meta-learners adapt.

``learner_model`` (chapter 01: public item features + learned item embedding, a per-learner head
adapted; its MAML meta-training), ``meta_irt`` (chapter 05: item parameters meta-learned, ability
adapted), ``posterior_meta_irt`` (chapter 05: MIRT meta-trained through the exact ability posterior),
``nearest_learners`` (chapter 05: metric-based, no adaptation), ``preference`` (chapter 06:
the MeLU-style rating model), ``text_preference`` (chapter 06: resources described by their text, so a
resource nobody has rated can be scored).
"""
