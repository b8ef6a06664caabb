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


def test_a_sub_of_literal_variables_counts_as_the_string_it_makes_and_nothing_else_does() -> None:
    def alarm(name: object) -> dict[str, object]:
        return {"Resources": {"Alarm": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"AlarmName": name}}}}

    written = alarm({"Fn::Sub": "${AWS::StackName}-identify-queue-age"})
    looped = alarm({"Fn::Sub": ["${AWS::StackName}-${Name}-queue-age", {"Name": "identify"}]})
    other = alarm({"Fn::Sub": ["${AWS::StackName}-${Name}-queue-age", {"Name": "conversion"}]})
    referenced = alarm({"Fn::Sub": ["${AWS::StackName}-${Name}-queue-age", {"Name": {"Ref": "Kind"}}]})

    assert differences(written, looped, ("Resources",)) == []
    assert differences(alarm({"Fn::Sub": "plain"}), alarm("plain"), ("Resources",)) == []
    changed = ["Resources.Alarm: differs in Properties.AlarmName.Fn::Sub"]
    assert differences(written, other, ("Resources",)) == differences(written, referenced, ("Resources",)) == changed
