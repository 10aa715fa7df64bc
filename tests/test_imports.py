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
