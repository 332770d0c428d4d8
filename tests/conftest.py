"""tests/browser/ (a real browser on JupyterLab) runs only with `make test-browser`, which sets COURSE_BROWSER_TESTS=1."""

import os

collect_ignore = [] if os.environ.get("COURSE_BROWSER_TESTS") == "1" else ["browser"]
