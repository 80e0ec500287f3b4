"""The time-unit engine (the paper's offline model), its closed forms, and its comparison
with the event-driven engine."""
