"""The template comparison tool (``tests/component/compare_transformed.py``) names what differs, and only that."""

from __future__ import annotations

from tests.component.compare_transformed import differences

BEFORE = {
    "Resources": {
        "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"MessageRetentionPeriod": 1209600, "Tags": {"a": "1"}}},
        "Gone": {"Type": "AWS::SQS::Queue"},
    },
    "Outputs": {"QueueUrl": {"Description": "Queue", "Value": {"Ref": "Queue"}}},
}


def test_identical_templates_have_no_differences() -> None:
    assert differences(BEFORE, BEFORE, ("Resources", "Outputs")) == []


def test_a_changed_property_is_named_by_its_path_and_added_or_removed_ids_are_named() -> None:
    after = {
        "Resources": {
            "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"MessageRetentionPeriod": 1209600, "Tags": {"a": "2"}}},
            "New": {"Type": "AWS::SQS::Queue"},
        },
        "Outputs": {"QueueUrl": {"Description": "The queue", "Value": {"Ref": "Queue"}}},
    }
    assert differences(BEFORE, after, ("Resources", "Outputs")) == [
        "Resources.Gone: removed",
        "Resources.New: added",
        "Resources.Queue: differs in Properties.Tags.a",
        "Outputs.QueueUrl: differs in Description",
    ]
