"""Operator tools for a running forwarder, local or deployed (never packaged into Lambda).

``ops.redrive``: ``make redrive KIND=identify|assignment|conversion [DRY_RUN=1] [STACK=<stack name>]``.
"""
