"""ARI/AMI → protocol event translation of the Asterisk adapter.

The ARI messages follow the models of Asterisk's rest-api/events.json and
channels.json (Channel, CallerID, DialplanCEP, Playback).
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from panoramisk.message import Message

from ccengine.pbx.asterisk.adapter import channel_from_json, translate_ami, translate_ari
from ccengine.pbx.protocol import (
    ChannelEntered,
    ChannelHungUp,
    ChannelLeft,
    ChannelStateChanged,
    DtmfReceived,
    PlaybackFinished,
    RecordingChanged,
)

CHANNEL: dict[str, Any] = {
    "id": "1716554400.42",
    "protocol_id": "a84d1c-7@127.0.0.1",
    "name": "PJSIP/customer-0000002a",
    "state": "Ring",
    "caller": {"name": "Ada Lovelace", "number": "+441632960001"},
    "connected": {"name": "", "number": ""},
    "accountcode": "",
    "dialplan": {"context": "from-customer", "exten": "8000", "priority": 2,
                 "app_name": "Stasis", "app_data": "ccengine,inbound,vip"},
    "creationtime": "2024-05-24T12:40:00.125+0200",
    "language": "en",
}


def ari(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "application": "ccengine", "timestamp": "2024-05-24T12:40:01.000+0200",
            "asterisk_id": "02:42:ac:11:00:02", **fields}


def assert_fresh(received_at: datetime) -> None:
    assert received_at.tzinfo is not None
    assert abs(datetime.now(UTC) - received_at) < timedelta(seconds=5)


# ------------------------------------------------------------------ ARI


def test_stasis_start_carries_args_caller_and_channel_name() -> None:
    event = translate_ari(ari("StasisStart", args=["inbound", "campaign-7"], channel=CHANNEL))
    assert isinstance(event, ChannelEntered)
    assert_fresh(event.received_at)
    ch = event.channel
    assert ch.id == "1716554400.42"
    assert ch.name == "PJSIP/customer-0000002a"
    assert ch.state == "Ring"
    assert (ch.caller_number, ch.caller_name) == ("+441632960001", "Ada Lovelace")
    assert ch.dialed == "8000"
    # explicit StasisStart args win over the dialplan's app_data
    assert ch.app_args == ("inbound", "campaign-7")
    assert ch.created == datetime(2024, 5, 24, 10, 40, 0, 125000, tzinfo=UTC)
    assert ch.created.utcoffset() == timedelta(hours=2)


def test_stasis_start_with_empty_args_keeps_them_empty() -> None:
    event = translate_ari(ari("StasisStart", args=[], channel=CHANNEL))
    assert isinstance(event, ChannelEntered)
    assert event.channel.app_args == ()


def test_stasis_end_is_channel_left() -> None:
    event = translate_ari(ari("StasisEnd", channel=CHANNEL))
    assert event == ChannelLeft(event.received_at, CHANNEL["id"])


def test_hangup_request_with_cause() -> None:
    event = translate_ari(ari("ChannelHangupRequest", cause=17, soft=False, channel=CHANNEL))
    assert isinstance(event, ChannelHungUp)
    assert (event.channel_id, event.cause, event.cause_text) == (CHANNEL["id"], 17, "cause 17")


def test_soft_hangup_request_without_cause_defaults_to_normal_clearing_code() -> None:
    event = translate_ari(ari("ChannelHangupRequest", soft=True, channel=CHANNEL))
    assert isinstance(event, ChannelHungUp)
    assert event.cause == 16


def test_channel_destroyed_uses_cause_txt() -> None:
    event = translate_ari(ari("ChannelDestroyed", cause=19, cause_txt="No user responding",
                              tech_cause=0, channel=CHANNEL))
    assert isinstance(event, ChannelHungUp)
    assert (event.channel_id, event.cause, event.cause_text) == (CHANNEL["id"], 19, "No user responding")


def test_dtmf_received() -> None:
    event = translate_ari(ari("ChannelDtmfReceived", digit="#", duration_ms=120, channel=CHANNEL))
    assert isinstance(event, DtmfReceived)
    assert (event.channel_id, event.digit, event.duration_ms) == (CHANNEL["id"], "#", 120)


def test_state_change_reads_the_new_state_from_the_channel() -> None:
    channel = {**CHANNEL, "state": "Up"}
    event = translate_ari(ari("ChannelStateChange", channel=channel))
    assert isinstance(event, ChannelStateChanged)
    assert (event.channel_id, event.state) == (CHANNEL["id"], "Up")


@pytest.mark.parametrize("state", ["done", "failed"])
def test_playback_finished_target_parsed_from_target_uri(state: str) -> None:
    playback = {"id": "pb-9f1", "media_uri": "sound:hello-world", "target_uri": "channel:1716554400.42",
                "language": "en", "state": state}
    event = translate_ari(ari("PlaybackFinished", playback=playback))
    assert isinstance(event, PlaybackFinished)
    assert (event.playback_id, event.target, event.state) == ("pb-9f1", "1716554400.42", state)


@pytest.mark.parametrize("kind", ["ChannelVarset", "BridgeCreated", "Dial", "NoSuchEvent"])
def test_unknown_or_ignored_types_are_none(kind: str) -> None:
    assert translate_ari(ari(kind, channel=CHANNEL)) is None


def test_translate_does_not_mutate_the_message() -> None:
    message = ari("StasisStart", args=["a"], channel=copy.deepcopy(CHANNEL))
    before = copy.deepcopy(message)
    translate_ari(message)
    assert message == before


# ------------------------------------------------------------------ channel_from_json


def test_app_args_derived_from_dialplan_app_data() -> None:
    info = channel_from_json(CHANNEL)
    assert info.app_args == ("inbound", "vip")


@pytest.mark.parametrize(("app_data", "expected"), [
    ("ccengine", ()),
    ("ccengine,", ("",)),
    ("ccengine,a,b,c", ("a", "b", "c")),
])
def test_app_data_split(app_data: str, expected: tuple[str, ...]) -> None:
    channel = {**CHANNEL, "dialplan": {**CHANNEL["dialplan"], "app_data": app_data}}
    assert channel_from_json(channel).app_args == expected


def test_no_app_args_when_channel_is_not_in_stasis() -> None:
    channel = {**CHANNEL, "dialplan": {**CHANNEL["dialplan"], "app_name": "Dial",
                                       "app_data": "PJSIP/x,30"}}
    assert channel_from_json(channel).app_args == ()


def test_explicit_args_override_dialplan() -> None:
    assert channel_from_json(CHANNEL, ["x"]).app_args == ("x",)


def test_minimal_channel_and_bad_creationtime() -> None:
    info = channel_from_json({"id": "c1", "creationtime": "yesterday"})
    assert (info.id, info.name, info.caller_number, info.dialed, info.app_args) == ("c1", "", "", "", ())
    assert info.created is None


def test_creationtime_negative_offset() -> None:
    info = channel_from_json({**CHANNEL, "creationtime": "2024-01-02T03:04:05.000-0500"})
    assert info.created == datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5)))


# ------------------------------------------------------------------ AMI


def ami(**headers: str) -> Message:
    return Message({"Privilege": "call,all", "Channel": "PJSIP/customer-0000002a",
                    "Uniqueid": "1716554400.42", "Linkedid": "1716554400.42", **headers})


@pytest.mark.parametrize(("name", "state"), [("MixMonitorStart", "started"), ("MixMonitorStop", "stopped")])
def test_mixmonitor_start_stop(name: str, state: str) -> None:
    event = translate_ami(ami(Event=name))
    assert isinstance(event, RecordingChanged)
    assert_fresh(event.received_at)
    assert (event.channel_id, event.state) == ("1716554400.42", state)


@pytest.mark.parametrize(("value", "state"), [("1", "muted"), ("0", "unmuted")])
def test_mixmonitor_mute(value: str, state: str) -> None:
    event = translate_ami(ami(Event="MixMonitorMute", Direction="both", State=value))
    assert isinstance(event, RecordingChanged)
    assert (event.channel_id, event.state) == ("1716554400.42", state)


def test_event_name_is_case_insensitive_and_plain_mappings_work() -> None:
    event = translate_ami({"Event": "mixmonitorstart", "Uniqueid": "u-1"})
    assert isinstance(event, RecordingChanged)
    assert (event.channel_id, event.state) == ("u-1", "started")


@pytest.mark.parametrize("name", ["Newchannel", "Hangup", "FullyBooted", ""])
def test_other_ami_events_are_ignored(name: str) -> None:
    assert translate_ami(ami(Event=name)) is None
