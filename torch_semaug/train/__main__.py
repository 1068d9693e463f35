"""``python -m torch_semaug.train`` (also under ``accelerate launch`` / ``torchrun``): ``semaug train``'s flags."""

import sys

from torch_semaug.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
