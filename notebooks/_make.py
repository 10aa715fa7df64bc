"""Helper for writing notebooks from cell lists (used by contributors, not by the package)."""

import sys

import nbformat


def write(path, cells):
    """
    Write a notebook from cell sources (``"md:..."`` for markdown). Plots must show in Jupyter: no cell may pick a
    matplotlib backend (CI sets ``MPLBACKEND=Agg`` itself).
    """
    for src in cells:
        if "matplotlib.use(" in src:
            raise ValueError(f"{path}: a cell calls matplotlib.use(); leave the backend to Jupyter (CI sets MPLBACKEND).")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell(src[3:]) if src.startswith("md:") else nbformat.v4.new_code_cell(src)
        for src in cells
    ]
    nbformat.write(nb, path)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("import this module from a notebook-building script")
