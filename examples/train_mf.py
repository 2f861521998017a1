"""Train matrix factorisation with hard (or uniform) negatives: the ``negsample train`` command.

The training code lives in the package (``negsample.cli``), so that the
command works from an installed wheel; this script runs it from a checkout::

    python examples/train_mf.py --help     # the same as: negsample train --help
    python examples/train_mf.py            # the default comparison on the built-in data
"""

import sys

from negsample.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
