"""Acting on a learner (chapter 07): ``cat`` picks the next test item; ``classroom`` simulates
knowledge-tracing learners, ``policies`` plan their next activity one step ahead, ``planning`` several
steps ahead (QMDP), ``bkt`` fits BKT from their logs; ``feedback`` simulates and chooses tutoring
feedback after a wrong answer (contextual bandits with a meta-learned prior)."""
