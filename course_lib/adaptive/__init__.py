"""Acting on a learner (chapter 07): ``cat`` picks the next test item; ``classroom`` simulates
knowledge-tracing learners, ``policies`` plan their next activity, ``bkt`` fits BKT from their logs."""
