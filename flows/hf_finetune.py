"""Example: carbon-aware training with the Hugging Face `Trainer`, through the Prefect training flow.

Deploy `carbon_aware_training` from this file with `job: hf_finetune.py:tiny_hf_job` (and the same in
`allowed_jobs`): the flow pauses the Trainer by checkpoint when the grid turns dirty (the Trainer's own
checkpoint folder, packed into the flow's published checkpoint file), reschedules long pauses as a run of
the deployment, and resumes with `trainer.train(resume_from_checkpoint=...)` in a fresh Trainer.
torch and transformers are imported inside the job factory, not when a worker or `prefect deploy` loads this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from carbon_flows.training import carbon_aware_training

if TYPE_CHECKING:
    from carbon_sensors.integrations.transformers import HFTrainerJob


def tiny_hf_job(epochs: int = 3, seed: int = 0) -> HFTrainerJob:
    """A tiny BERT sequence classifier fine-tuned with `transformers.Trainer` (AdamW, linear decay), offline.

    No weights are downloaded: the model is built from a `BertConfig` (randomly initialised from `seed`) and
    learns a toy rule on random token ids; `report_to="none"` keeps every logging integration off.
    """
    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        PrinterCallback,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from carbon_sensors.integrations.transformers import HFTrainerJob

    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, 64, (256, 12), generator=generator)
    labels = (tokens[:, 0] > 32).long()  # a rule to learn: which half of the vocabulary the first token is in
    samples = [{"input_ids": t, "labels": y} for t, y in zip(tokens, labels, strict=True)]
    config = BertConfig(
        vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16,
    )  # fmt: skip
    config.num_labels = 2  # a PretrainedConfig attribute, not a typed BertConfig argument

    def make_trainer(callbacks: list[TrainerCallback], output_dir: str) -> Trainer:
        torch.manual_seed(seed)
        args = TrainingArguments(
            output_dir=output_dir,
            num_train_epochs=epochs,
            per_device_train_batch_size=16,
            learning_rate=0.01,
            logging_steps=1,
            save_strategy="no",  # the carbon-aware callback decides when to checkpoint
            report_to="none",
            use_cpu=True,
            seed=seed,
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=BertForSequenceClassification(config), args=args, train_dataset=samples, callbacks=callbacks
        )
        trainer.remove_callback(PrinterCallback)
        return trainer

    return HFTrainerJob(make_trainer, total_steps=epochs * 16)


if __name__ == "__main__":
    carbon_aware_training(job=f"{__file__}:tiny_hf_job", strategy="none")
