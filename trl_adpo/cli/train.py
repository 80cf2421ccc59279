"""`trl-adpo train`: train a causal LM with ADPO from a YAML config, in the style of TRL's `scripts/dpo.py`.

```bash
# the offline quickstart: builds a tiny model and an arithmetic preference dataset on first use
trl-adpo train --config configs/quickstart.yaml

# a real run: any option of the YAML file can be overridden on the command line
trl-adpo train --config configs/adpo_adaptive_m256.yaml \
    --model_name_or_path Qwen/Qwen2.5-0.5B-Instruct --dataset_name trl-lib/ultrafeedback_binarized \
    --output_dir Qwen2.5-0.5B-ADPO --bf16 true
```

`python scripts/train_adpo.py ...` runs the same.

Every option of `ADPOConfig` (TRL's `DPOConfig` plus the granularity), TRL's `ModelConfig` (model, dtype, LoRA via
`use_peft`, 4-bit via `load_in_4bit`) and `ScriptArguments` below is a YAML key and a `--flag`; `--help` lists them.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import yaml
from datasets import Dataset
from accelerate import PartialState
from huggingface_hub import get_token
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import ModelConfig, get_peft_config, get_quantization_config

from trl_adpo.cli.parsing import ConfigParser
from trl_adpo.config import ADPOConfig
from trl_adpo.critical_models import adapter_base
from trl_adpo.data import BadRowError, check_preference_dataset
from trl_adpo.examples.arithmetic import save_quickstart
from trl_adpo.files import SECRET_OPTIONS, OutputLock, refuse_output_among_inputs, write_atomically
from trl_adpo.pipeline.io import check_model_source, is_data_file, load_data, readable_weights, row_location
from trl_adpo.report.plots import PLOT_FILE, has_metrics, plot_training_dynamics
from trl_adpo.report.progress import use_compact_progress
from trl_adpo.report.summary import eval_summary
from trl_adpo.trainer import ADPOTrainer
from trl_adpo.trainer_common import resolve_checkpoint

@dataclass
class ScriptArguments:
    """Where the data comes from."""

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Training data: a Hub dataset name, a local dataset directory, or a local .jsonl, .json, .parquet "
            "or .csv file. Rows are TRL preference examples: `prompt`/`chosen`/`rejected`, or `chosen`/`rejected` "
            "with the prompt inside both, as text or as conversations."
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Configuration name of a Hub dataset."})
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    dataset_test_split: str = field(
        default="test", metadata={"help": "Split to evaluate on, used when `dataset_name` has it."}
    )
    eval_dataset_name: str | None = field(
        default=None,
        metadata={"help": "Evaluation data of its own (same forms as `dataset_name`); its first split is used."},
    )
    ref_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "The reference model. Default: the policy's starting weights, loaded again (with LoRA, the base "
            "with the adapters disabled; with precompute_ref_log_probs, the policy before training)."
        },
    )
    plot: bool = field(
        default=True,
        metadata={
            "help": f"Write the training-dynamics plot ({PLOT_FILE}: chosen/rejected log-probs, margins, accuracies) "
            "into output_dir at the end; a Hub push uploads it and the model card shows it."
        },
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Replace the run that output_dir already holds: its model, state and checkpoints are removed "
            "before training. Without it, training into the directory of an earlier run is refused (resume that "
            "run with resume_from_checkpoint, or choose another output_dir)."
        },
    )
    quickstart_dir: str | None = field(
        default=None,
        metadata={
            "help": "Build the offline quickstart here if it is missing: a tiny Llama in `model/` and arithmetic "
            "preference pairs in `train.jsonl` and `eval.jsonl` (see configs/quickstart.yaml). An empty value builds nothing, "
            "for a run that starts from a quickstart config with its own model and data."
        },
    )


def load_splits(script_args: ScriptArguments) -> tuple[Dataset, Dataset | None]:
    """The train dataset and, when there is one, the eval dataset."""
    if script_args.dataset_name is None:
        raise ValueError("dataset_name is not set: give a Hub dataset name, a local directory, or a data file.")
    data = load_data(script_args.dataset_name, script_args.dataset_config, "dataset_name")
    if script_args.dataset_train_split not in data:
        raise ValueError(
            f"dataset_train_split: {script_args.dataset_name!r} has no split {script_args.dataset_train_split!r}; "
            f"its splits are {list(data)}."
        )
    train = data[script_args.dataset_train_split]
    if script_args.eval_dataset_name is not None:
        evaluation = load_data(script_args.eval_dataset_name, None, "eval_dataset_name")
        return train, next(iter(evaluation.values()))
    return train, data.get(script_args.dataset_test_split)


RUN_FILES = (
    "trainer_state.json", "training_args.bin", "training_config.yaml", "README.md", PLOT_FILE, "config.json",
    "generation_config.json", "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
    "adapter_model.safetensors", "adapter_model.bin", "adapter_config.json", "all_results.json", "train_results.json",
    "eval_results.json",
)
"""What a `trl-adpo train` run writes into its output_dir, besides its checkpoints and tokenizer files."""


def earlier_run(output_dir: Path) -> list[str]:
    """The files and checkpoints of an earlier run in `output_dir` (empty when there is none)."""
    if not output_dir.is_dir():
        return []
    found = [name for name in ("trainer_state.json", "model.safetensors", "adapter_model.safetensors",
                               "model.safetensors.index.json", "pytorch_model.bin") if (output_dir / name).is_file()]
    return found + sorted(c.name for c in output_dir.glob("checkpoint-*") if c.is_dir())


def resuming(training_args: ADPOConfig) -> bool:
    return training_args.resume_from_checkpoint not in (None, False, "", "false", "False")


def check_output_dir(script_args: ScriptArguments, training_args: ADPOConfig) -> list[str]:
    """Refuse to train over an earlier run in output_dir unless resuming it or asked to replace it; the earlier run's
    files and checkpoints to replace (none when resuming or when there is no earlier run). Nothing is removed here:
    `replacing` moves them aside only once training starts, and puts them back if it fails."""
    output_dir = Path(training_args.output_dir)
    found = earlier_run(output_dir)
    if not found or resuming(training_args):
        return []
    if not script_args.overwrite_output_dir:
        raise ValueError(
            f"output_dir {str(output_dir)!r} already holds a run ({', '.join(found[:4])}{', ...' if len(found) > 4 else ''}): "
            "training into it would overwrite its model and leave its checkpoints beside the new run's state. Choose "
            "another output_dir, resume that run with --resume_from_checkpoint true, or replace it with "
            "--overwrite_output_dir true."
        )
    return [name for name in [*RUN_FILES, *(c.name for c in output_dir.glob("checkpoint-*"))] if (output_dir / name).exists()]


def check_not_finished(training_args: ADPOConfig) -> None:
    """Refuse to resume a run that has nothing left to train: its newest checkpoint is at its last step."""
    if not resuming(training_args):
        return
    checkpoint = resolve_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    planned = training_args.max_steps if training_args.max_steps > 0 else state.get("max_steps", 0)
    more_epochs = training_args.max_steps <= 0 and training_args.num_train_epochs > state.get("num_train_epochs", 0)
    if state.get("global_step", 0) >= planned and not more_epochs:
        raise ValueError(
            f"resume_from_checkpoint: {checkpoint} is at step {state.get('global_step')} of {planned}: the run is "
            "finished, there is nothing to resume, and it is left as it is. To train it longer, resume with a larger "
            "max_steps (or num_train_epochs)."
        )


@contextmanager
def replacing(output_dir: Path, earlier: list[str]) -> Iterator[None]:
    """Keep output_dir from holding a run that looks finished but is not: an earlier run's files (`earlier`) are moved
    aside while the new run trains and deleted once it has saved. If training or saving fails or is interrupted, the
    new run's top-level files (a model cut short by the interruption) are removed and the earlier run is put back;
    the new run's checkpoints stay when there was no earlier run, so that it can be resumed."""
    state = PartialState()
    aside = output_dir.with_name(f".{output_dir.name}.replaced")
    if earlier and state.is_main_process:
        shutil.rmtree(aside, ignore_errors=True)
        aside.mkdir(parents=True)
        for name in earlier:
            os.replace(output_dir / name, aside / name)
    state.wait_for_everyone()
    try:
        yield
    except BaseException:
        if state.is_main_process:
            new = [*RUN_FILES, *((c.name for c in output_dir.glob("checkpoint-*")) if earlier else ())]
            for path in (output_dir / name for name in new):
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
            for name in earlier:
                os.replace(aside / name, output_dir / name)
            if earlier:
                aside.rmdir()
                print(f"The earlier run in {output_dir.resolve()} was put back as it was.", file=sys.stderr)
        raise
    if earlier and state.is_main_process:
        shutil.rmtree(aside)
        print(f"Replaced the earlier run in {output_dir.resolve()}.")


def interrupted(argv: list[str]) -> str:
    """What an interrupted `trl-adpo train` leaves, and how to go on (`trl_adpo.cli.main` prints it)."""
    try:
        output_dir = Path(parse_args(argv)[1].output_dir)
        checkpoint = resolve_checkpoint(True, str(output_dir))
    except (ValueError, FileNotFoundError, SystemExit):
        return ("No checkpoint was saved, and nothing in output_dir looks finished: run the same command to start "
                "again.")
    return (f"Its last checkpoint is {checkpoint}; nothing in output_dir looks finished. Resume with the same command "
            "and --resume_from_checkpoint true.")


REPORTERS = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "trackio": ("trackio",)}
"""The experiment trackers `report_to` may name, and the packages any of which each needs."""


def check_report_to(training_args: ADPOConfig) -> None:
    """Refuse, naming what to install, a `report_to` tracker whose package is missing (before any work)."""
    import importlib.util

    wanted = training_args.report_to if isinstance(training_args.report_to, list) else [training_args.report_to]
    for tracker in wanted:
        packages = REPORTERS.get(tracker)
        if packages and not any(importlib.util.find_spec(package) for package in packages):
            extra = " (or pip install 'trl-adpo[tensorboard]')" if tracker == "tensorboard" else ""
            raise ValueError(
                f"report_to: {tracker} is not installed: pip install {packages[0]}{extra}, or set report_to to none."
            )


def check_tokenizers_match(policy: str, reference: str | None) -> None:
    """Refuse a reference model whose tokenizer differs from the policy's (another vocabulary or other token ids)."""
    if reference is None or not Path(reference).is_dir() or not any(Path(reference).glob("tokenizer*")):
        return
    ours, theirs = (AutoTokenizer.from_pretrained(name).get_vocab() for name in (policy, reference))
    if ours != theirs:
        differing = len(set(ours.items()) ^ set(theirs.items()))
        raise ValueError(
            f"ref_model_name_or_path: the tokenizer of {reference!r} differs from the policy's ({len(theirs)} against "
            f"{len(ours)} tokens, {differing} (token, id) pairs not shared): a reference must score the policy's "
            "token ids. Give a reference of the policy's family, or none (the policy's starting weights)."
        )


@contextmanager
def rows_named_by_line(script_args: ScriptArguments) -> Iterator[None]:
    """Report a bad row by its file and line (`row_location`), where the trainer knows only its number."""
    try:
        yield
    except BadRowError as error:
        source = script_args.dataset_name
        if error.split == "eval" and script_args.eval_dataset_name is not None:
            source = script_args.eval_dataset_name
        split = "" if is_data_file(source) else f" ({error.split} split)"
        raise error.located(row_location(source, error.row) + split) from None


def check_hub_login(training_args: ADPOConfig) -> None:
    """Fail before any work if the run is to be pushed to the Hub without a token or a repository name."""
    if not training_args.push_to_hub:
        return
    if training_args.hub_model_id is None:
        raise ValueError("push_to_hub is set but hub_model_id is not: name the repository, e.g. `you/model-adpo`.")
    if (training_args.hub_token or get_token()) is None:
        raise ValueError(
            "push_to_hub is set but no Hugging Face token was found: run `hf auth login` (or set the HF_TOKEN "
            "environment variable, or `hub_token`) before training."
        )


def trust_remote_code(model_args: ModelConfig, training_args: ADPOConfig) -> bool:
    """TRL 0.28 keeps `trust_remote_code` in ModelConfig, TRL 1.x in the trainer's config."""
    return getattr(model_args, "trust_remote_code", None) or getattr(training_args, "trust_remote_code", False)


def load_model(model_args: ModelConfig, trust_code: bool, name: str | None = None) -> torch.nn.Module:
    """The policy (or the model `name`), quantized to 4 or 8 bits when `ModelConfig` asks for it."""
    dtype = model_args.dtype if model_args.dtype in ("auto", None) else getattr(torch, model_args.dtype)
    kwargs = dict(
        revision=model_args.model_revision,
        attn_implementation=model_args.attn_implementation,
        dtype=dtype,
        trust_remote_code=trust_code,
    )
    quantization_config = get_quantization_config(model_args)
    if quantization_config is not None:
        # quantized weights go to this process's GPU; on a machine without one they stay on the CPU
        device_map = {"": PartialState().local_process_index} if torch.cuda.is_available() else None
        kwargs.update(quantization_config=quantization_config, device_map=device_map)
    name = name or model_args.model_name_or_path
    with readable_weights(name, "ref_model_name_or_path" if name != model_args.model_name_or_path else "model_name_or_path"):
        return AutoModelForCausalLM.from_pretrained(name, **kwargs)


FSDP_FALLBACK = (
    "FSDP was asked for (an FSDP accelerate config), but accelerate runs it as plain data parallel: it enables FSDP "
    "on GPUs only. Every process holds the whole model; on GPUs the same config shards it."
)


def describe_distribution(trainer: ADPOTrainer) -> str | None:
    """How the run is spread over processes, in words (with a warning when an FSDP config fell back to DDP), or None
    for one process."""
    state = trainer.accelerator.state
    if state.num_processes == 1:
        return None
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" and not trainer.is_fsdp_enabled:
        warnings.warn(FSDP_FALLBACK, stacklevel=2)
    if trainer.is_deepspeed_enabled:
        stage = state.deepspeed_plugin.zero_stage
        partitioned = stage == 3 and any(hasattr(p, "ds_id") for p in trainer.model.parameters())
        setup = f"DeepSpeed ZeRO-{stage}" + (", parameters partitioned" if partitioned else "")
    elif trainer.is_fsdp_enabled:
        setup = f"FSDP{getattr(state.fsdp_plugin, 'fsdp_version', 1)}"
    else:
        setup = f"data parallel ({state.distributed_type.value}, backend {state.backend})"
    return f"Distributed: {setup}, {state.num_processes} processes"


def save_run_config(path: Path, *configs) -> None:
    """Write every resolved option of the run next to the model (it travels with it to the Hub), as a config file
    that `trl-adpo train --config` runs again; credentials (`SECRET_OPTIONS`) are left empty."""
    resolved = {}
    for config in configs:
        values = config.to_dict() if hasattr(config, "to_dict") else asdict(config)
        for key, value in values.items():
            if key.endswith("_token"):  # to_dict masks every *_token option, pad_token included: keep the real ones
                value = None if key in SECRET_OPTIONS else getattr(config, key)
            resolved[key] = value
    header = (
        f"# Every resolved option of this run (credentials left empty). To train it again:\n"
        f"#   trl-adpo train --config {path.name} --output_dir OTHER_DIR\n"
    )
    write_atomically(path, header + yaml.safe_dump(resolved, sort_keys=False, default_flow_style=False))


def run(script_args: ScriptArguments, training_args: ADPOConfig, model_args: ModelConfig) -> ADPOTrainer:
    """Check everything, load the model, tokenizer and data, train, evaluate, save (and push); returns the trainer.

    While it works, the run holds a lock beside output_dir (`OUTPUT_DIR.lock`): a second run into the same output_dir
    is refused."""
    check_hub_login(training_args)
    check_report_to(training_args)
    if script_args.quickstart_dir:
        save_quickstart(script_args.quickstart_dir)
    if model_args.model_name_or_path is None:
        raise ValueError("model_name_or_path is not set: give a Hub model name or a local model directory.")
    inputs = {}
    for option in ("model_name_or_path", "ref_model_name_or_path", "positive_model", "negative_model"):
        owner = next(c for c in (model_args, script_args, training_args) if hasattr(c, option))
        check_model_source(getattr(owner, option), option)
        inputs[option] = getattr(owner, option)
    inputs.update(dataset_name=script_args.dataset_name, eval_dataset_name=script_args.eval_dataset_name)
    refuse_output_among_inputs({"output_dir": training_args.output_dir}, inputs)
    if Path(model_args.model_name_or_path).is_dir():  # saved adapters then find their base from any directory
        model_args.model_name_or_path = str(Path(model_args.model_name_or_path).resolve())
    with OutputLock(training_args.output_dir, "output_dir") if PartialState().is_main_process else nullcontext():
        return train(script_args, training_args, model_args)


def train(script_args: ScriptArguments, training_args: ADPOConfig, model_args: ModelConfig) -> ADPOTrainer:
    """`run`, once its arguments are checked and output_dir is locked."""
    earlier = check_output_dir(script_args, training_args)
    check_not_finished(training_args)
    train_dataset, eval_dataset = load_splits(script_args)
    with rows_named_by_line(script_args):  # bad rows fail before the model loads
        check_preference_dataset(train_dataset, "train")
        if eval_dataset is not None:
            check_preference_dataset(eval_dataset, "eval")
    if training_args.eval_strategy != "no" and eval_dataset is None:
        raise ValueError(
            f"eval_strategy={training_args.eval_strategy!r} needs evaluation data: set eval_dataset_name, give "
            f"dataset_name a {script_args.dataset_test_split!r} split, or set eval_strategy to 'no'."
        )
    check_tokenizers_match(model_args.model_name_or_path, script_args.ref_model_name_or_path)
    trust_code = trust_remote_code(model_args, training_args)
    model = load_model(model_args, trust_code)
    # As TRL's dpo.py: a reference loaded like the policy, unless LoRA's base or a precomputed reference serves (TRL
    # 0.28 cannot copy the policy under DeepSpeed ZeRO-3)
    ref_model = None
    if script_args.ref_model_name_or_path or not (model_args.use_peft or training_args.precompute_ref_log_probs):
        ref_model = load_model(model_args, trust_code, script_args.ref_model_name_or_path)
    tokenizer = load_tokenizer(model_args, trust_code)

    with rows_named_by_line(script_args), hub_reachable(training_args):
        trainer = ADPOTrainer(
            model,
            ref_model=ref_model,
            args=training_args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=tokenizer,
            peft_config=get_peft_config(model_args),
        )
    use_compact_progress(trainer)
    distribution = describe_distribution(trainer)
    if distribution is not None:
        trainer.accelerator.print(distribution)
    output_dir = Path(training_args.output_dir)
    with replacing(output_dir, earlier):
        trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        if eval_dataset is not None:  # the final evaluation, unless the run just made it
            last = next((entry for entry in reversed(trainer.state.log_history) if "eval_loss" in entry), None)
            final = last is not None and last.get("step") == trainer.state.global_step
            trainer.save_metrics("eval", last if final else trainer.evaluate())
        trainer.save_state()  # trainer_state.json: the log history of the run
        plot = save_run(trainer, script_args, training_args, model_args)
    summary = eval_summary(trainer.state.log_history)
    if summary is not None:
        trainer.accelerator.print(summary)
    if plot is not None:
        trainer.accelerator.print(f"Plot: {plot.resolve()}")
    trainer.accelerator.print(f"Model saved to {output_dir.resolve()}")
    if training_args.push_to_hub:
        trainer.accelerator.print(f"Model pushed to https://huggingface.co/{trainer.hub_model_id}")
    return trainer


def save_run(trainer: ADPOTrainer, script_args: ScriptArguments, training_args: ADPOConfig, model_args: ModelConfig):
    """Write the run's config, plot, model and card into output_dir (and push them); the plot's path, if drawn."""
    output_dir = Path(training_args.output_dir)
    plot = None
    if trainer.is_world_process_zero():
        output_dir.mkdir(parents=True, exist_ok=True)
        save_run_config(output_dir / "training_config.yaml", script_args, model_args, training_args)
        if script_args.plot and has_metrics(trainer.state.log_history):  # before the card and the push
            plot = plot_training_dynamics([output_dir], output_dir / PLOT_FILE)
        elif script_args.plot:
            print(f"No training metrics were logged (logging_steps={training_args.logging_steps}): no plot.")
    if training_args.push_to_hub:  # saves the model and its card in output_dir, then uploads the folder
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
    else:
        trainer.save_model(str(output_dir))
        trainer.create_model_card(dataset_name=script_args.dataset_name)
    return plot


def load_tokenizer(model_args: ModelConfig, trust_code: bool):
    """The policy's tokenizer (its pad token the EOS token if it has none); a local model directory without tokenizer
    files is refused, naming it."""
    name = model_args.model_name_or_path
    directory = Path(name)
    if directory.is_dir() and not any(directory.glob("tokenizer*")) and adapter_base(name) is None:
        raise FileNotFoundError(
            f"model_name_or_path: {name!r} holds a model but no tokenizer (no tokenizer.json or tokenizer_config.json): "
            "save the tokenizer beside it (tokenizer.save_pretrained(directory)), or train from a directory that has both."
        )
    tokenizer = AutoTokenizer.from_pretrained(name, revision=model_args.model_revision, trust_remote_code=trust_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@contextmanager
def hub_reachable(training_args: ADPOConfig) -> Iterator[None]:
    """With push_to_hub, Trainer creates the Hub repository when it is built: name the option when that fails."""
    try:
        yield
    except Exception as error:
        module = type(error).__module__  # httpx's errors may come from a module named httpx2
        if not training_args.push_to_hub or not module.startswith(("huggingface_hub", "requests", "urllib3", "httpx")):
            raise
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"push_to_hub: could not create or reach {training_args.hub_model_id!r} on the Hugging Face Hub "
            f"({type(error).__name__}: {first_line}). Check the network and the token; or train with --push_to_hub "
            "false and upload output_dir afterwards (hf upload)."
        ) from None


DATACLASSES = (ScriptArguments, ADPOConfig, ModelConfig)


def make_parser() -> ConfigParser:
    """The options of ScriptArguments, ADPOConfig and ModelConfig; `--help` shows ADPO's own first."""
    from trl import DPOConfig

    parser = ConfigParser(DATACLASSES, prog="trl-adpo train")
    inherited = {f.name for f in fields(DPOConfig)}
    parser.group_options(
        [
            ("ADPO options (trl_adpo's ADPOConfig)", [f.name for f in fields(ADPOConfig) if f.name not in inherited]),
            ("data and run options", [f.name for f in fields(ScriptArguments)]),
            ("model options (TRL's ModelConfig: LoRA, 4-bit...)", [f.name for f in fields(ModelConfig)]),
        ],
        rest="DPO and Trainer options (TRL's DPOConfig, transformers' TrainingArguments)",
    )
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[ScriptArguments, ADPOConfig, ModelConfig]:
    """Parse `--config FILE` (YAML) and command-line flags, which override the file."""
    return make_parser().parse(sys.argv[1:] if argv is None else argv)


def main(argv: list[str] | None = None) -> None:
    trainer = run(*parse_args(argv))
    processes = trainer.accelerator.num_processes
    trainer.accelerator.end_training()  # ends the trackers and, in a distributed run, the process group
    if processes > 1:
        # Everything is saved and the process group is gone. A process of a DeepSpeed ZeRO-3 run (2 CPU processes,
        # gloo) aborted about one exit in ten in Python's finalization, after all of this ("terminate called without
        # an active exception": a C++ object of the distributed stack destroyed there, with no Python frame left on
        # any thread), and the launcher then failed the whole run. Leave without that finalization.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
