"""Test helper: `trl-adpo train`, killed with SIGKILL at a chosen point, as a crash or an out-of-memory kill does.

python tests/killed_training.py step:5 --config ...   # as step 5 starts
python tests/killed_training.py save:4 --config ...   # while checkpoint-4 is saved: after its weights and
                                                     # optimizer, before its trainer_state.json
"""

import os
import signal
import sys

from transformers import Trainer

where, step = sys.argv[1].split(":")
step = int(step)

if where == "save":
    save_rng_state = Trainer._save_rng_state

    def killed_while_saving(self, output_dir):
        if self.state.global_step == step:
            os.kill(os.getpid(), signal.SIGKILL)
        save_rng_state(self, output_dir)

    Trainer._save_rng_state = killed_while_saving
else:
    training_step = Trainer.training_step

    def killed_at_step(self, *args, **kwargs):
        if self.state.global_step + 1 == step:  # global_step counts the steps done
            os.kill(os.getpid(), signal.SIGKILL)
        return training_step(self, *args, **kwargs)

    Trainer.training_step = killed_at_step

from trl_adpo.cli.main import main  # noqa: E402

sys.exit(main(["train", *sys.argv[2:]]))
