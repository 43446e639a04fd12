"""Task families and their registry: `get_task(name, **options)`, `list_tasks()`.

A task turns problems into prompts and grades completions; see `base.Task` for the interface.
Each family module registers itself with `@register("name")`.
"""
from __future__ import annotations

from .base import Problem, Task, get_task, list_tasks, register, task_info

# Importing the family modules registers them.
from . import arithmetic, countdown, datasets_tasks  # noqa: E402,F401

__all__ = ["Problem", "Task", "get_task", "list_tasks", "register", "task_info"]
