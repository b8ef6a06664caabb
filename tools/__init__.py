"""Development tools of the repository (never packaged): ``python -m tools.complexity``, the complexity gate."""
