"""``python -m hybridpot ...``: the ``hybridpot`` command (for when the console script is not on
``PATH``, e.g. after ``pip install --user``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
