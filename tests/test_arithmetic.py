"""The synthetic reasoning task: its verifier, its wrong solutions, and the quickstart built from it."""

from __future__ import annotations

import random

from trl_adpo.examples.arithmetic import VARIABLES, Problem, preference_rows, sample_problem, wrong_solution


def test_worked_solution_follows_the_prompt_and_the_verifier_checks_the_answer():
    problem = Problem(initial=(7, 5), steps=(("+", 0, 1), ("*", 2, 0), ("-", 3, 1)))
    assert problem.prompt == "a = 7 ; b = 5 ; c = a + b ; d = c * a ; e = d - b ; e = ?"
    assert problem.solution() == "c = 7 + 5 = 2 ; d = 2 * 7 = 4 ; e = 4 - 5 = 9 ; answer 9"
    assert problem.answer == 9
    assert problem.is_correct("c = 7 + 5 = 2 ; answer 9") and not problem.is_correct("answer 8")
    assert not problem.is_correct("no answer here")


def test_answers_match_a_direct_evaluation_of_the_prompt():
    rng = random.Random(0)
    for _ in range(200):
        problem = sample_problem(rng, num_steps=5, num_initial=3)
        env = {VARIABLES[i]: v for i, v in enumerate(problem.initial)}
        for statement in problem.prompt.split(" ; ")[len(problem.initial) : -1]:
            name, expression = statement.split(" = ")
            env[name] = eval(expression, {}, dict(env)) % 10  # the prompt's own arithmetic, mod 10
        assert problem.answer == env[VARIABLES[len(problem.initial) + 4]]
        assert problem.is_correct(problem.solution())


def test_wrong_solutions_share_the_prefix_before_their_error_and_fail_the_verifier():
    rng = random.Random(1)
    for _ in range(100):
        problem = sample_problem(rng, num_steps=4)
        right, wrong = problem.solution().split(" ; "), wrong_solution(problem, rng).split(" ; ")
        assert not problem.is_correct(" ; ".join(wrong))
        first_difference = next(i for i, (a, b) in enumerate(zip(right, wrong)) if a != b)
        assert right[:first_difference] == wrong[:first_difference]
        # the wrong step's operands are right, only its result is wrong
        assert right[first_difference].rsplit(" = ", 1)[0] == wrong[first_difference].rsplit(" = ", 1)[0]


def test_preference_rows_are_standard_pairs():
    rows = preference_rows(8, seed=3)
    assert all(set(row) == {"prompt", "chosen", "rejected"} and row["chosen"] != row["rejected"] for row in rows)
