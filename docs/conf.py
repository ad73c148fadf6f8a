"""Sphinx configuration of the documentation site: ``sphinx-build -W -b html docs docs/_build``.

The pages are plain Markdown (MyST), so anyone can write one without knowing reStructuredText;
``reference/options.md`` and ``coming-from.md`` are generated from the options table
(``python -m h2gate.options_doc --write``). tests/docs/test_docs_site.py builds the site with
warnings as errors and runs its code examples.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from h2gate import __version__

project = "h2gate"
author = "the h2gate developers"
copyright = "the h2gate developers, MIT License"
version = release = __version__

extensions = ["myst_parser", "sphinx.ext.graphviz"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "README.md"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
graphviz_output_format = "svg"

html_theme = "furo"
html_title = f"h2gate {release}"
html_static_path: list[str] = []
