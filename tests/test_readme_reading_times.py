"""The README's chapter table quotes each notebook's own time estimate (its first cell's **Time**)."""

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
TIME = re.compile(r"\*\*Time[.:]?\*\*[.:]?\s*(?:about\s+)?(\d+(?:\s*[–-]\s*\d+)?)\s*(minutes|hours?)", re.IGNORECASE)


def readme_times() -> dict[str, str]:
    rows = {}
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        m = re.match(r"\| (\d\d) \| \[.*?\]\(notebooks/.*?\.ipynb\) \|.*\| ([\d–-]+) min \|", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_readme_reading_time_is_the_notebooks_estimate(path):
    first = nbformat.read(path, as_version=4).cells[0].source
    found = TIME.search(first) or TIME.search("\n".join(c.source for c in nbformat.read(path, 4).cells[:3]))
    assert found, f"{path.name}: the opening cell states no '**Time:** about N minutes' estimate"
    estimate = re.sub(r"\s*[–-]\s*", "–", found.group(1))
    if found.group(2).lower().startswith("hour"):          # "about 2 hours" is quoted as 120 min
        estimate = "–".join(str(60 * int(v)) for v in estimate.split("–"))
    quoted = readme_times().get(path.stem[:2])
    assert quoted == estimate, (f"README says {quoted} min for {path.name}, the notebook says {estimate} minutes: "
                                "update the README's chapter table")
