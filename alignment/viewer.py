"""A self-contained HTML page over an explanation folder (`alignment.explain.write_explanations`).

`write_viewer(out, manifest)` writes `out/index.html` from the template `alignment/data/viewer.html`: inline CSS
and JavaScript, the manifest inlined as JSON, the radiographs referenced by relative path, so the page opens from
disk with no server and no network. A person picks an image and an entity (the list shows P(present) and the
prediction), toggles the overlay and sets its opacity; the map is drawn in the page from the entity's region grid
with the same interpolation, colour map and colour range (the map's minimum / maximum to 1) as the PNG overlays. With a report, each word is shaded by its
attention to where the selected entity attends (Σ over regions of the entity's attention × the word's
attention), or, after a click on the image, by its attention to that region, scaled from the least attending
word (unshaded) to the most attending one (the page says when they differ by under 10%: a flat map); clicking a
word shows its own map. Under the entity list, the page says when every entity's map on the image peaks at the
same region (the manifest's `shared_peak`). The state is kept in the URL hash (`#image=0&entity=1&word=4&region=7&
overlay=off&opacity=0.4`), so a view can be bookmarked, and a headless browser can be pointed at one.

The layout is fixed in CSS pixels: the image stage's top-left corner is at (STAGE_LEFT, STAGE_TOP) and the image
is scaled to fit STAGE_WIDTH × STAGE_HEIGHT, which lets a screenshot be checked (tests/test_explain.py).
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

from .explain import DEFAULT_OPACITY, TABLE

INDEX = "index.html"
HEADER, SIDE = 48, 300
STAGE_LEFT, STAGE_TOP, STAGE_WIDTH, STAGE_HEIGHT = SIDE + 20, HEADER + 16, 512, 640
REPORT_LEFT = STAGE_LEFT + STAGE_WIDTH + 24


def stage_size(height: int, width: int) -> tuple[int, int]:
    """The displayed (height, width) of an H×W image on the stage, in CSS pixels (the page's own rule)."""
    scale = min(STAGE_WIDTH / width, STAGE_HEIGHT / height)
    return max(1, round(height * scale)), max(1, round(width * scale))


def render(manifest: dict) -> str:
    template = files("alignment").joinpath("data/viewer.html").read_text(encoding="utf-8")
    data = json.dumps(manifest, separators=(",", ":"))
    # inside <script>, "</" could close the element and "<!--" open a comment: escape both (JSON allows \/ and \u003c)
    data = data.replace("</", "<\\/").replace("<!--", "\\u003c!--")
    values = {
        "__HEADER__": HEADER, "__SIDE__": SIDE, "__STAGE_LEFT__": STAGE_LEFT, "__STAGE_TOP__": STAGE_TOP,
        "__STAGE_WIDTH__": STAGE_WIDTH, "__STAGE_HEIGHT__": STAGE_HEIGHT, "__REPORT_LEFT__": REPORT_LEFT,
        "__OPACITY__": DEFAULT_OPACITY, "__TABLE__": json.dumps(TABLE.tolist(), separators=(",", ":")),
    }
    for key, value in values.items():
        template = template.replace(key, str(value))
    return template.replace("__DATA__", data)  # last: the data may contain the other markers' text


def write_viewer(out: Path, manifest: dict) -> Path:
    path = Path(out) / INDEX
    path.write_text(render(manifest), encoding="utf-8")
    return path
