"""Problems to sample or evaluate: a dataset's questions and reference answers, asked with a prompt template.

`ProblemSource` holds the options (a dataclass, so it is also the command line's); `load_problems` checks them and
the data before any model is loaded: missing columns, a reference answer the verifier cannot parse (by row), a
template without its ``{question}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .io import is_data_file, load_data, row_location
from .prompts import TASKS, Task, check_template, few_shot_prefix
from .verifiers import Verifier, load_verifier


@dataclass(frozen=True)
class Problem:
    """One problem: its id, question, parsed reference answer and the full prompt the model sees (text, or a user
    message for the chat template)."""

    id: str | int
    question: str
    reference: str
    prompt: str | list[dict[str, str]]


@dataclass
class ProblemSource:
    """Where the problems come from and how they are asked; the task's presets fill what is not given."""

    dataset_name: str | None = field(
        default=None,
        metadata={"help": "The problems: a Hub dataset (e.g. openai/gsm8k), a local directory, or a data file."},
    )
    dataset_config: str | None = field(
        default=None, metadata={"help": "Configuration of a Hub dataset (gsm8k: main)."}
    )
    dataset_split: str = field(
        default="train",
        metadata={
            "help": "The split whose problems are asked (a Hub dataset or a dataset directory; a local data file "
            "is one split)."
        },
    )
    task: str | None = field(
        default=None,
        metadata={
            "help": "Presets for the columns, verifier, template, shots and stop strings: gsm8k, math or arithmetic.",
            "choices": [*TASKS, None],
        },
    )
    question_column: str | None = field(default=None, metadata={"help": "The column with the questions."})
    answer_column: str | None = field(default=None, metadata={"help": "The column with the reference answers."})
    id_column: str | None = field(
        default=None, metadata={"help": "A column of problem ids (default: the row number)."}
    )
    verifier: str | None = field(
        default=None,
        metadata={
            "help": "gsm8k, math, arithmetic, or your own as module:function (see trl_adpo.pipeline.verifiers)."
        },
    )
    template: str | None = field(
        default=None, metadata={"help": "The prompt of one problem, with a {question} field."}
    )
    exemplar_template: str | None = field(
        default=None, metadata={"help": "One few-shot exemplar, with {question} and {solution} fields."}
    )
    num_shots: int | None = field(
        default=None, metadata={"help": "Few-shot exemplars before each question (0: none)."}
    )
    exemplar_split: str = field(
        default="train", metadata={"help": "The split the exemplars are drawn from (with `shot_seed`)."}
    )
    exemplar_dataset_name: str | None = field(
        default=None,
        metadata={"help": "Where the exemplars come from, if not `dataset_name` (e.g. MATH's training set)."},
    )
    solution_column: str | None = field(default=None, metadata={"help": "The exemplars' worked solutions."})
    shot_seed: int = field(default=0, metadata={"help": "Seed that draws the exemplars (the same for every problem)."})
    max_problems: int | None = field(default=None, metadata={"help": "Only the first this many problems."})
    chat: bool = field(
        default=False,
        metadata={
            "help": "Ask each prompt as a user message through the model's chat template (instruction-tuned models). "
            "Samples then hold conversational prompts, and `trl-adpo pairs` writes conversational pairs."
        },
    )

    def resolved_task(self) -> Task:
        """The task with this source's options in place of its presets."""
        preset = TASKS.get(self.task) if self.task else None
        values = {}
        for name in ("verifier", "question_column", "answer_column", "template", "solution_column"):
            value = getattr(self, name) if getattr(self, name) is not None else getattr(preset, name, None)
            if value is None and name != "solution_column":
                raise ValueError(f"{name} is not set: give it, or a --task whose presets have it ({sorted(TASKS)}).")
            values[name] = value
        shots = self.num_shots if self.num_shots is not None else (preset.shots if preset else 0)
        exemplar = self.exemplar_template or (preset.exemplar if preset else "{question}{solution}\n\n")
        return Task(
            values["verifier"],
            values["question_column"],
            values["answer_column"],
            values["template"],
            exemplar,
            values["solution_column"],
            shots,
            preset.stop if preset else (),
            preset.format_solution if preset else str.strip,
        )


def require_columns(dataset, columns: list[str], name: str) -> None:
    missing = [column for column in columns if column not in dataset.column_names]
    if missing:
        raise ValueError(
            f"{name} has no column {missing[0]!r}: its columns are {dataset.column_names}. Name the right one with "
            f"--{'question' if missing[0] == columns[0] else 'answer'}_column (or the matching option)."
        )


def load_problems(source: ProblemSource) -> tuple[list[Problem], Task, Verifier]:
    """The problems of `source`, each with its parsed reference and full prompt, the resolved task and its verifier.

    Raises:
        ValueError: naming the dataset, column, row or option that is wrong.
    """
    if source.dataset_name is None:
        raise ValueError("dataset_name is not set: give a Hub dataset, a directory or a data file of problems.")
    task = source.resolved_task()
    check_template(task.template, "template")
    if task.shots:
        check_template(task.exemplar, "exemplar_template", ("question", "solution"))
    if task.shots < 0:
        raise ValueError(f"num_shots must be >= 0, got {task.shots}.")
    verifier = load_verifier(task.verifier)
    data = load_data(source.dataset_name, source.dataset_config, "dataset_name")
    if is_data_file(source.dataset_name):  # a local file is one split, whatever its name
        dataset = next(iter(data.values()))
    elif source.dataset_split in data:
        dataset = data[source.dataset_split]
    else:
        raise ValueError(
            f"dataset_split: {source.dataset_name!r} has no split {source.dataset_split!r}; it has {list(data)}."
        )
    name = f"{source.dataset_name} ({source.dataset_split})"
    require_columns(dataset, [task.question_column, task.answer_column], name)
    if source.id_column is not None:
        require_columns(dataset, [source.id_column], name)

    prefix = ""
    if task.shots:
        exemplar_data = (
            data
            if source.exemplar_dataset_name is None
            else load_data(source.exemplar_dataset_name, None, "exemplar_dataset_name")
        )
        if source.exemplar_split not in exemplar_data:
            raise ValueError(
                f"exemplar_split: no split {source.exemplar_split!r} for the exemplars; there are "
                f"{list(exemplar_data)}."
            )
        exemplars = exemplar_data[source.exemplar_split]
        if task.solution_column is None:
            raise ValueError("solution_column is not set: the few-shot exemplars need worked solutions.")
        require_columns(
            exemplars, [task.question_column, task.solution_column], f"the exemplars' {source.exemplar_split} split"
        )
        prefix = few_shot_prefix(
            exemplars[task.question_column],
            exemplars[task.solution_column],
            task,
            task.shots,
            source.shot_seed,
            task.exemplar,
        )

    rows = dataset if source.max_problems is None else dataset.select(range(min(source.max_problems, len(dataset))))
    problems = []
    for row_number, row in enumerate(rows):
        reference = verifier.reference(str(row[task.answer_column]))
        if reference is None:
            where = (
                row_location(source.dataset_name, row_number)
                if is_data_file(source.dataset_name)
                else f"{name}, row {row_number}"
            )
            raise ValueError(
                f"{where}: the {verifier.name} verifier cannot parse the reference answer "
                f"{str(row[task.answer_column])[:120]!r} in column {task.answer_column!r}. Fix the row, or choose "
                "the verifier that matches this dataset."
            )
        question = str(row[task.question_column])
        problem_id = row[source.id_column] if source.id_column else row_number
        prompt = prefix + task.template.format(question=question)
        problems.append(
            Problem(problem_id, question, reference, [{"role": "user", "content": prompt}] if source.chat else prompt)
        )
    return problems, task, verifier
