"""Tests of the local stack itself and of the Segment sink."""
