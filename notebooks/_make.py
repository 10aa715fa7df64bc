"""Helper for writing notebooks from cell lists (used by contributors, not by the package)."""

import sys

import nbformat


def write(path, cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell(src[3:]) if src.startswith("md:") else nbformat.v4.new_code_cell(src)
        for src in cells
    ]
    nbformat.write(nb, path)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("import this module from a notebook-building script")
