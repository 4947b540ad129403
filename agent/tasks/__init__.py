"""Task files: ``qwq-agent run TASKS.yaml``, from the YAML to the results file.

In the order a run goes through them:

- :mod:`agent.tasks.safe_yaml`: YAML with ``safe_load`` semantics, limits, and the place of
  every value (for located errors).
- :mod:`agent.tasks.taskfile`: the schema (:class:`~agent.tasks.taskfile.Settings`,
  ``Task``, ``TaskFile``), reading a file into a :class:`~agent.tasks.taskfile.TaskFileSpec`
  with every schema problem (:mod:`agent.tasks.problems` words them), and
  :class:`~agent.tasks.taskfile.TaskPlan`, one task ready to run.
- :mod:`agent.tasks.expect`: the ``expect:`` checks of a task's result.
- :mod:`agent.tasks.planning`: :func:`~agent.tasks.planning.plan_tasks` merges the command
  line, each task, the file and the config file into plans, checking models and workspaces,
  with :mod:`agent.tasks.layers` (the layers a setting comes from, the config file as one),
  :mod:`agent.tasks.tool_checks` (``tools:``, ``approve:``, ``expect: tool_called:``),
  :mod:`agent.tasks.task_prompts` (the system prompt; the prompt, rendered in the bounded
  sandbox of :mod:`agent.tasks.templates`) and :mod:`agent.tasks.plan_problems` (every
  problem, located where its value was written).
- :mod:`agent.tasks.runner`: runs the plans (models shared between tasks, in parallel where
  asked); :mod:`agent.tasks.results` writes and resumes the JSONL results;
  :mod:`agent.tasks.progress` shows progress and the summary.

The package uses the agent core (:mod:`agent`) and never the command line; the command line
(:mod:`agent.cli.run`) uses it.
"""
