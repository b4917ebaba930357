"""`python -m app.cli COMMAND ...` (what `lmscope` runs, and what the job queue and torchrun start)."""
import os
import sys

from app.cli import main

code = main()
if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # a torchrun worker (`torchrun ... -m app.cli train ...`)
    from model.train.run import exit_worker

    exit_worker(code)
sys.exit(code)
