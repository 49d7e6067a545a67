"""One error for input with several problems (a taxonomy, a grading model, …)."""

from __future__ import annotations


class ProblemsError(ValueError):
    """Invalid input; `problems` has one line per problem, all shown to the person at once.

    `str(error)` is the one message, or all of them.
    """

    what = "input"

    def __init__(self, problems: list[str] | str) -> None:
        # One problem may come as a plain message.
        problems = [problems] if isinstance(problems, str) else list(problems)
        self.problems = problems
        super().__init__(
            problems[0]
            if len(problems) == 1
            else f"invalid {self.what}:\n" + "\n".join(f"- {p}" for p in problems)
        )
