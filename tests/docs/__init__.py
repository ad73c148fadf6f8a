"""Tests of the documentation: the generated option pages (h2gate.options_doc) and the site in docs/."""
