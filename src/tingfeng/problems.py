"""One error for input with several problems (a taxonomy, a grading model, …)."""

from __future__ import annotations


class ProblemsError(ValueError):
    """Invalid input; `problems` has one line per problem, all shown to the person at once."""

    what = "input"

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            problems[0]
            if len(problems) == 1
            else f"invalid {self.what}:\n" + "\n".join(f"- {p}" for p in problems)
        )
