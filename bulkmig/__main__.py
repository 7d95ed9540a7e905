"""``python -m bulkmig``: the same command line as the ``bulkmig`` script."""

import sys

from bulkmig.cli import main

sys.exit(main())
