"""One worker seen from the supervisor: how it starts (launch), how it is watched and
stopped (monitor), how everything it started is found (tree), and how its output is cut
into lines (lines).
"""
