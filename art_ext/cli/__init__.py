"""
The ``art-ext`` command line: ``doctor``, ``demo`` and one command per method. Each command is a module of this
package exposing ``add_parser(subparsers)`` and ``run(args) -> int``; :data:`art_ext.cli.main.COMMANDS` lists them.
"""
