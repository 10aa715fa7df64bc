"""Every module imports without torch or tensorflow, as ART's do."""

import importlib
import pkgutil
import subprocess
import sys

import art_ext


def test_every_module_imports_without_frameworks():
    names = [m.name for m in pkgutil.walk_packages(art_ext.__path__, "art_ext.") if not m.name.endswith("__main__")]
    code = (
        "import sys, importlib\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'tensorflow', 'keras'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        # As if not installed, importlib.util.find_spec answers None (ART's own availability checks use it).
        "import importlib.util\n"
        "_find_spec = importlib.util.find_spec\n"
        "def find_spec(name, package=None):\n"
        "    if name.split('.')[0] in ('torch', 'tensorflow', 'keras'):\n"
        "        return None\n"
        "    return _find_spec(name, package)\n"
        "importlib.util.find_spec = find_spec\n"
        f"for n in {names!r}:\n"
        "    importlib.import_module(n)\n"
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
