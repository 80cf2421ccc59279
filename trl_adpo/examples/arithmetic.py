"""A synthetic multi-step reasoning task with an exact verifier: chained arithmetic modulo 10.

A problem gives the first variables a digit each and derives every next one from two earlier ones::

    prompt:   a = 7 ; b = 5 ; c = a + b ; d = c * a ; d = ?
    solution: c = 7 + 5 = 2 ; d = 2 * 7 = 4 ; answer 4

Every number is one word-level token. A wrong solution that goes astray at one step and computes consistently from
there shares its prefix with the right one, which is where token-level credit assignment should matter. It feeds
the offline quickstart (`save_quickstart`) and the reasoning benchmark.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from ..pipeline.io import write_jsonl
from .tiny import save_tiny_model

VARIABLES = "abcdefghij"
OPERATIONS = {"+": lambda x, y: (x + y) % 10, "-": lambda x, y: (x - y) % 10, "*": lambda x, y: (x * y) % 10}
WORDS = [str(digit) for digit in range(10)] + list(VARIABLES) + ["=", ";", "?", "answer", *OPERATIONS]
ANSWER = re.compile(r"answer (\d)\b")


@dataclass(frozen=True)
class Problem:
    """Digits for the first variables, then steps ``(op, i, j)``: the next variable is ``var_i op var_j`` mod 10."""

    initial: tuple[int, ...]
    steps: tuple[tuple[str, int, int], ...]

    @property
    def prompt(self) -> str:
        parts = [f"{VARIABLES[i]} = {value}" for i, value in enumerate(self.initial)]
        first = len(self.initial)
        parts += [
            f"{VARIABLES[first + n]} = {VARIABLES[i]} {op} {VARIABLES[j]}" for n, (op, i, j) in enumerate(self.steps)
        ]
        return " ; ".join(parts) + f" ; {VARIABLES[first + len(self.steps) - 1]} = ?"

    def _values(self, wrong_step: int | None = None, wrong_value: int | None = None) -> list[int]:
        values = list(self.initial)
        for n, (op, i, j) in enumerate(self.steps):
            values.append(wrong_value if n == wrong_step else OPERATIONS[op](values[i], values[j]))
        return values

    @property
    def answer(self) -> int:
        return self._values()[-1]

    def solution(self, wrong_step: int | None = None, wrong_value: int | None = None) -> str:
        """The worked solution; with `wrong_step`, that step's result is `wrong_value` and later steps follow it."""
        values, first = self._values(wrong_step, wrong_value), len(self.initial)
        parts = [
            f"{VARIABLES[first + n]} = {values[i]} {op} {values[j]} = {values[first + n]}"
            for n, (op, i, j) in enumerate(self.steps)
        ]
        return " ; ".join(parts) + f" ; answer {values[-1]}"

    def is_correct(self, completion: str) -> bool:
        """Whether the completion's first `answer D` is this problem's answer."""
        match = ANSWER.search(completion)
        return match is not None and int(match.group(1)) == self.answer


def sample_problem(rng: random.Random, num_steps: int, num_initial: int = 2) -> Problem:
    """Random digits for the first `num_initial` variables, then `num_steps` steps over any earlier variables."""
    initial = tuple(rng.randrange(10) for _ in range(num_initial))
    steps = tuple(
        (rng.choice(list(OPERATIONS)), rng.randrange(num_initial + n), rng.randrange(num_initial + n))
        for n in range(num_steps)
    )
    return Problem(initial, steps)


def wrong_solution(problem: Problem, rng: random.Random) -> str:
    """A solution that goes wrong at one random step and computes consistently from there: a wrong answer."""
    while True:
        step = rng.randrange(len(problem.steps))
        solution = problem.solution(step, rng.randrange(10))
        if not problem.is_correct(solution):
            return solution


def preference_rows(count: int, seed: int, num_steps: int = 3) -> list[dict[str, str]]:
    """Pairs of a correct (chosen) and a wrong (rejected) worked solution, in TRL's standard preference format."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        problem = sample_problem(rng, num_steps)
        rows.append({"prompt": problem.prompt, "chosen": problem.solution(), "rejected": wrong_solution(problem, rng)})
    return rows


def problem_rows(count: int, seed: int, num_steps: int = 3) -> list[dict[str, str]]:
    """Problems for sampling and evaluation (`trl-adpo sample --task arithmetic`): `prompt`, `answer` (the digit) and
    `solution` (the worked solution)."""
    rng = random.Random(seed)
    problems = [sample_problem(rng, num_steps) for _ in range(count)]
    return [{"prompt": p.prompt, "answer": str(p.answer), "solution": p.solution()} for p in problems]


def train_sft(
    model,
    tokenizer,
    problems: list[Problem],
    steps: int,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    seed: int = 0,
    log_every: int = 100,
    progress: bool = False,
) -> list[dict]:
    """Supervised fine-tuning on the problems' correct worked solutions (loss on the solution and EOS only), a plain
    torch loop of `steps` steps of `batch_size` problems drawn with `seed`; returns the logged losses. With
    `progress`, a progress bar of the steps shows the loss."""
    import torch
    from tqdm.auto import tqdm

    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    examples = [(encode(p.prompt), encode(p.solution()) + [tokenizer.eos_token_id]) for p in problems]
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    rng, history = random.Random(seed), []
    model.train()
    bar = tqdm(range(1, steps + 1), desc="SFT of the tiny model", unit="step", disable=not progress)
    for step in bar:
        rows = rng.sample(examples, min(batch_size, len(examples)))
        width = max(len(prompt) + len(solution) for prompt, solution in rows)
        input_ids = torch.full((len(rows), width), tokenizer.pad_token_id)
        labels = torch.full((len(rows), width), -100)
        attention_mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, (prompt, solution) in enumerate(rows):
            tokens = prompt + solution
            input_ids[i, : len(tokens)] = torch.tensor(tokens)
            attention_mask[i, : len(tokens)] = 1
            labels[i, len(prompt) : len(tokens)] = torch.tensor(solution)
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % log_every == 0 or step == steps:
            history.append({"step": step, "loss": round(loss.item(), 4)})
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return history


def save_walkthrough(directory: str | Path, sft_steps: int = 300, progress: bool = False) -> Path:
    """Build the pipeline walk-through in `directory`, unless it is there already: `sft-model/`, a tiny Llama (2
    layers, 64 wide) SFT-trained for `sft_steps` steps on worked solutions of 3-step problems (about 40% greedy
    accuracy after 300 steps, some 10 seconds on 2 CPU cores: a model that is often right, often wrong, and always
    ends its answer), `problems.jsonl` (256 problems to sample) and `heldout.jsonl` (200 to evaluate on). With
    `progress`, a progress bar of the SFT steps and, at the end, a line saying what was built."""
    from .tiny import build_tiny_llama, build_word_tokenizer

    directory = Path(directory)
    if (directory / "heldout.jsonl").exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    tokenizer = build_word_tokenizer(WORDS)
    model = build_tiny_llama(len(tokenizer), hidden_size=64, num_layers=2, num_heads=4, max_positions=256)
    problems = [sample_problem(rng, 3) for _ in range(4000)]
    history = train_sft(model, tokenizer, problems, sft_steps, progress=progress)
    model.save_pretrained(directory / "sft-model")
    tokenizer.save_pretrained(directory / "sft-model")
    write_jsonl(problem_rows(256, seed=2), directory / "problems.jsonl")
    write_jsonl(problem_rows(200, seed=3), directory / "heldout.jsonl")
    if progress:
        print(
            f"Built {directory.resolve()}: sft-model/ (a tiny Llama, SFT-trained {sft_steps} steps on worked "
            f"solutions of 3-step problems, final loss {history[-1]['loss']:.3f}), problems.jsonl (256 problems to "
            "sample) and heldout.jsonl (200 to evaluate on)."
        )
    return directory


def save_quickstart(directory: str | Path) -> Path:
    """Build the offline quickstart in `directory`, unless it is there already.

    Writes `model/` (a tiny Llama and its word-level tokenizer, in HF format), `train.jsonl` (512 preference pairs),
    `eval.jsonl` (64 pairs of other problems), and `problems.jsonl` / `heldout.jsonl` (256 and 128 problems with
    their answers, for `trl-adpo sample` and `trl-adpo evaluate --task arithmetic`).
    """
    directory = Path(directory)
    if (directory / "heldout.jsonl").exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    save_tiny_model(directory / "model", WORDS, hidden_size=64, num_layers=2, num_heads=4)
    write_jsonl(preference_rows(512, seed=0), directory / "train.jsonl")
    write_jsonl(preference_rows(64, seed=1), directory / "eval.jsonl")
    write_jsonl(problem_rows(256, seed=2), directory / "problems.jsonl")
    write_jsonl(problem_rows(128, seed=3), directory / "heldout.jsonl")
    return directory


if __name__ == "__main__":  # python -m trl_adpo.examples.arithmetic DIRECTORY: the walk-through's model and problems
    import sys

    from trl_adpo.noise import quiet_third_party_noise

    quiet_third_party_noise()
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".walkthrough")
    if (target / "heldout.jsonl").exists():
        print(f"The walk-through's SFT model and problems are in {target.resolve()} already.")
    else:
        import transformers

        transformers.utils.logging.disable_progress_bar()  # no bar for writing a 1 MB model
        save_walkthrough(target, progress=True)
