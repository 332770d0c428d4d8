"""Acting on a learner (chapter 07): ``cat`` picks the next test item, ``classroom`` simulates
knowledge-tracing learners and the policies that plan their next activity."""
