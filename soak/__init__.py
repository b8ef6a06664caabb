"""``make soak``: the local stack under load, crashes, a flapping Segment and a connection change, then every
invariant checked from what the sink received. Never packaged into Lambda.

Modules: ``invariants`` (the pure evaluator), ``workload`` (request bodies), ``clients`` (well-behaved HTTP and SQS
producers), ``chaos`` (worker kills, Segment faults), ``run`` (phases, settle, report), ``evidence`` (dump and
re-check a run), ``netstat`` (the kernel's listen-overflow counter). ``python -m soak --help`` for the options.
"""
