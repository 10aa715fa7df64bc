"""
Sections of ``art-ext demo``. Each is a module of this package with a ``TITLE`` and ``run(ctx)`` writing into
``ctx.report``; :data:`SECTIONS` orders them. A method adds its section here and to :data:`SECTIONS`.
Every section should finish in well under a minute on 2 CPU cores, and faster with ``ctx.quick``.
"""

#: Section modules in report order.
SECTIONS = ["baseline", "dfme", "distillation", "fgsm", "lmt", "vat"]

#: Other spellings accepted by ``--sections`` (one name per method: ``distillation``).
SECTION_ALIASES = {"distill": "distillation"}
