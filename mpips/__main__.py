"""``python -m mpips`` is the ``mpips`` command."""
import sys

from .cli import main

sys.exit(main())
