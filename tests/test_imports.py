"""Every module imports without torch or tensorflow, as ART's do."""

import importlib
import pkgutil
import subprocess
import sys

import art_ext


def test_every_module_imports_without_frameworks():
    names = [m.name for m in pkgutil.walk_packages(art_ext.__path__, "art_ext.") if not m.name.endswith("__main__")]
    code = (
        # Hide the frameworks as if they were not installed (find_spec returns None, import raises), so that ART,
        # which probes with importlib.util.find_spec, imports as it does without them.
        "import sys, importlib, importlib.machinery\n"
        "class Hide(importlib.machinery.PathFinder):\n"
        "    @classmethod\n"
        "    def find_spec(cls, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'tensorflow', 'keras'):\n"
        "            return None\n"
        "        return importlib.machinery.PathFinder.find_spec(name, path, target)\n"
        "sys.meta_path = [Hide if f is importlib.machinery.PathFinder else f for f in sys.meta_path]\n"
        f"for n in {names!r}:\n"
        "    importlib.import_module(n)\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow', 'keras')]\n"
        "print('ok', len(sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert len(names) > 20


def test_subpackages_export_what_they_declare():
    for name in [m.name for m in pkgutil.walk_packages(art_ext.__path__, "art_ext.") if m.ispkg]:
        module = importlib.import_module(name)
        for exported in getattr(module, "__all__", []):
            assert hasattr(module, exported), f"{name} declares {exported} but lacks it"


def _imports_of(module_name):
    """Names of the art_ext modules a module imports (anywhere in it, functions included)."""
    import ast

    module = importlib.import_module(module_name)
    tree = ast.parse(open(module.__file__, encoding="utf-8").read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("art_ext"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("art_ext"))
    return found


def test_layers_point_one_way():
    """The library never imports art_ext.models; demo sections never import a command module (no CLI circle)."""
    names = [m.name for m in pkgutil.walk_packages(art_ext.__path__, "art_ext.")]
    for name in names:
        # the audit is an application on top of the library, like the CLI: it builds reference surrogates/generators
        if name.startswith(("art_ext.models", "art_ext.cli", "art_ext.evaluations.audit")):
            continue
        bad = [m for m in _imports_of(name) if m == "art_ext.models" or m.startswith("art_ext.models.")]
        assert not bad, f"{name} imports {bad}: the library must not depend on art_ext.models"
    commands = {f"art_ext.cli.{c}" for c in ("demo", "dfme", "distill", "distillation", "lmt", "vat")}
    for name in names:
        if name.startswith(("art_ext.cli.sections", "art_ext.cli.experiments")):
            bad = _imports_of(name) & commands
            assert not bad, f"{name} imports the command module(s) {bad}; use art_ext.cli.experiments"
