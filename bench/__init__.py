"""Benchmarks of the forwarder, printed by ``make bench`` (``python -m bench``); never packaged.

Modules: ``workload`` (the deterministic SQS stream and its expected outcome), ``typical_app`` (the *typical
stack* compared against), ``aws_endpoint`` (moto in its own process), ``throughput`` (both stacks on the same
endpoint and Segment sink, AWS calls counted at botocore), ``coldstart`` (import times in fresh processes),
``package_size`` (``sam build`` output), ``report`` (tables).
"""
