"""Built-in step executors, each called in a worker as ``run(ctx)``: ``python_step``, ``command_step``, ``media/``."""
