"""One run inside the aicp process: the supervisor that orders steps, retries and groups,
and the run record that remembers each step so a run can resume.
"""
