"""Shared machinery every method runs on.

  state.py      state built shape-first (checkpoint templates) and placed
  supernet.py   the pure, jitted supernet train step and its optimiser
  loop.py       the training loop: prefetch, steps, metrics, checkpoints
  evaluator.py  scores a batch of paths with an objective's score
  errors.py     out-of-memory errors reworded as one line naming the knobs
"""
