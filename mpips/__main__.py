"""``python -m mpips`` is the ``mpips`` command."""
import sys

from .cli.main import main

sys.exit(main())
