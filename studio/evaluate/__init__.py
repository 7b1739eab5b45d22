"""Evaluation: did the run make the model better, what did it forget, does the export
behave the same. One module the CLI (`python -m studio eval`) and the Evaluate tab map
to; results on disk beside the run (runs/<run-id>/eval/<eval-id>/).

  spec.py        EvalSpec: models x tasks x settings, YAML, validate (no torch)
  models.py      run:/base:/folder/hub references, resolved before work and loaded
  tasks.py       a task's data -> examples of its kind, columns checked
  checks.py      everything refused before a process starts
  scoring.py     log-likelihoods and greedy replies (torch; the evaluation process only)
  metrics.py     per-example text metrics, bootstrap intervals
  compare.py     parity, the reward-model judge, the summary
  lmeval.py      lm-evaluation-harness on the loaded model; the benchmark catalogue
  runner.py      one evaluation in this process
  background.py  the evaluation process: launch, status, stop, list (the training queue's lock)
  presets.py     the three questions
  cli.py         `python -m studio eval ...`
"""
from studio.evaluate.cli import add_cli
from studio.evaluate.spec import EvalSettings, EvalSpec, TaskSpec

__all__ = ["EvalSettings", "EvalSpec", "TaskSpec", "add_cli"]
