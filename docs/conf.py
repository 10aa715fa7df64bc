"""Sphinx configuration of the art_ext documentation."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

from art_ext import __version__  # noqa: E402

project = "art_ext"
author = "art_ext developers"
copyright = "2026, art_ext developers"
version = release = __version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode", "sphinx.ext.mathjax"]
autodoc_default_options = {"members": True, "show-inheritance": True, "member-order": "bysource"}
autodoc_typehints = "description"
# Constructor parameters are documented in ``__init__`` (ART's style): render them under the class.
autoclass_content = "both"
# The docs build without torch or tensorflow: art_ext imports them lazily.
autodoc_mock_imports = ["torch", "tensorflow", "keras"]
nitpicky = False
html_theme = "alabaster"
html_theme_options = {"description": "Extensions for IBM's Adversarial Robustness Toolbox"}
exclude_patterns = ["_build"]
suppress_warnings = ["ref.python"]
