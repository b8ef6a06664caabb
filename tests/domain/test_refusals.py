"""What Segment's refusals mean: one bad message (split to find it, then refused for good) or a source that refuses
everything (the workspace's configuration: retried, never parked)."""

from __future__ import annotations

import pytest

from segment_forwarder.facts import REFUSED_ALL, Refusal, SendResult, bisect, refusal, refused_all


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_is_the_source_at_once_never_split(status):
    assert refusal(status, ok=False, messages=100) is Refusal.SOURCE
    assert refusal(status, ok=False, messages=1) is Refusal.SOURCE


@pytest.mark.parametrize("status", [400, 413, 422])
def test_a_request_refused_for_one_message_is_split_until_the_message_stands_alone(status):
    assert refusal(status, ok=False, messages=2) is Refusal.SPLIT
    assert refusal(status, ok=False, messages=1) is Refusal.MESSAGE


@pytest.mark.parametrize(("status", "ok"), [(200, True), (None, False), (429, False), (503, False), (404, False)])
def test_other_answers_stand_as_answered(status, ok):
    assert refusal(status, ok=ok, messages=10) is Refusal.NONE


def test_both_halves_refused_before_anything_was_accepted_is_the_source_refusing_everything():
    assert bisect(Refusal.SPLIT, Refusal.SPLIT, accepted=False) is Refusal.SOURCE
    assert bisect(Refusal.MESSAGE, Refusal.MESSAGE, accepted=False) is Refusal.SOURCE


def test_once_the_source_accepted_something_both_halves_are_split_further():
    assert bisect(Refusal.SPLIT, Refusal.SPLIT, accepted=True) is Refusal.NONE
    assert bisect(Refusal.MESSAGE, Refusal.MESSAGE, accepted=True) is Refusal.NONE


def test_one_half_accepted_means_the_other_holds_the_bad_message():
    assert bisect(Refusal.NONE, Refusal.SPLIT, accepted=False) is Refusal.NONE
    assert bisect(Refusal.MESSAGE, Refusal.NONE, accepted=False) is Refusal.NONE


def test_a_source_refusing_everything_is_retried_with_a_reason_that_names_the_status():
    assert refused_all(401) == SendResult(False, True, f"{REFUSED_ALL}: 401")
