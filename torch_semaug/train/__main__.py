"""``python -m torch_semaug.train`` (also under ``accelerate launch`` / ``torchrun``)."""

import sys

from torch_semaug.train.classifier import main

if __name__ == "__main__":
    sys.exit(main())
