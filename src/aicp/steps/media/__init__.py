"""Offline media step executors: Pillow for stills, the ffmpeg binary for video and audio.

Each module exposes ``run(ctx) -> dict`` (called in the worker) and, where
parameters can be judged before anything runs, ``check(params, model)``
(called by the CLI during validation). Modules import Pillow and start
processes only inside those functions, so naming them in the step catalogue
costs nothing at start-up.
"""
