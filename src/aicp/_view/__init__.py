"""The view for people: a model of the run built from its events, and two ways to show it
(a live block on a terminal, plain lines elsewhere). Imported only by the commands that show it."""
