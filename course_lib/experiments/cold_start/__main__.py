"""``python -m course_lib.experiments.cold_start``: the chapter 05 study's command line."""

from course_lib.experiments.cold_start import main

main()
