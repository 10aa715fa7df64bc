"""``python -m art_ext.cli``."""

import sys

from art_ext.cli.main import main

sys.exit(main())
