"""HTTPRoute matching compiled ahead of time, and the rule filters applied to a matched request."""
