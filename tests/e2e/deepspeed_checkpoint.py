"""Write a DeepSpeed ZeRO checkpoint directory the way Lightning's ``DeepSpeedStrategy`` writes one, on CPU.

Lightning refuses DeepSpeed without CUDA, but DeepSpeed itself runs on its CPU accelerator (gloo): this script
gives ``deepspeed.initialize`` our ``PretrainModule`` (Lightning 2.6 hands it the LightningModule itself, so the
engine's keys are the module's ``model.…``), takes one optimizer step, and saves as Lightning's
``DeepSpeedStrategy.save_checkpoint`` does: ``engine.save_checkpoint(path, client_state=<checkpoint without
state_dict and optimizer_states>, tag="checkpoint")``. It also writes the trained model's logits on a fixed
input (``<path>.logits.pt``) for the export test to compare with.

    python deepspeed_checkpoint.py STAGE PATH
"""

from __future__ import annotations

import os
import sys

os.environ.update(DS_ACCELERATOR="cpu", RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1")
os.environ.setdefault("MASTER_PORT", "29533")


def main(stage: int, path: str) -> None:
    import deepspeed
    import torch

    from lit_pretrain import PretrainModule

    module = PretrainModule(preset="gpt2-tiny", vocab_size=512, seq_len=64)
    module.configure_model()
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-2)
    config = {"train_micro_batch_size_per_gpu": 2, "zero_optimization": {"stage": stage},
              "zero_allow_untested_optimizer": True}  # fmt: skip
    engine, *_ = deepspeed.initialize(model=module, optimizer=optimizer, config=config)
    generator = torch.Generator().manual_seed(0)
    batch = torch.randint(0, 512, (2, 32), generator=generator)
    loss = module.model(input_ids=batch, labels=batch).loss
    engine.backward(loss)
    engine.step()  # the saved weights are not the initial ones
    module.model.eval()
    probe = torch.randint(0, 512, (1, 24), generator=generator)
    with torch.no_grad():
        torch.save({"input_ids": probe, "logits": module.model(input_ids=probe).logits}, f"{path}.logits.pt")
    client_state = {"hyper_parameters": dict(module.hparams), "global_step": 1, "epoch": 0}
    engine.save_checkpoint(path, client_state=client_state, tag="checkpoint")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
