"""Drives the emulator with the official Alibaba Cloud Python SDKs, unchanged, under both
signing methods. Every in-scope action is called through its SDK, and every answer is checked
against the SDK's model field by field: each field the emulator sends must be one the model
declares (under the same JSON name), with the model's type. `from_map` alone checks nothing:
it drops unknown names and keeps strings where the model says int.

The emulator binary comes from EMULATOR_BIN (default: target/debug/alicloud-cloud-emulator).
"""

import copy
import datetime
import json
import os
import pathlib
import subprocess
import typing
import urllib.request

import pytest
from alibabacloud_appstream_center20210901 import models as asc_models
from alibabacloud_appstream_center20210901.client import Client as AppstreamClient
from alibabacloud_ecd20200930 import models as ecd_models
from alibabacloud_ecd20200930.client import Client as EcdClient
from alibabacloud_swas_open20200601 import models as swas_models
from alibabacloud_sts20150401 import models as sts_models
from alibabacloud_sts20150401.client import Client as StsClient
from alibabacloud_swas_open20200601.client import Client as SwasClient
from alibabacloud_tea_openapi import models as open_api_models
from Tea.exceptions import TeaException

ROOT = pathlib.Path(__file__).resolve().parents[2]
KEY_ID = "LTAI5tEmulatorDefault"
KEY_SECRET = "emulator-secret-do-not-use-in-production"


@pytest.fixture(scope="module")
def emulator():
    binary = os.environ.get("EMULATOR_BIN", str(ROOT / "target" / "debug" / "alicloud-cloud-emulator"))
    proc = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    first = proc.stdout.readline()
    assert "listening on http://" in first, first
    host = first.strip().rsplit("http://", 1)[1]
    yield host
    proc.terminate()
    proc.wait(timeout=10)


def config(host, algorithm):
    cfg = open_api_models.Config(
        access_key_id=KEY_ID,
        access_key_secret=KEY_SECRET,
        endpoint=host,
        protocol="http",
        region_id="cn-hangzhou",
    )
    if algorithm == "v2":
        cfg.signature_algorithm = "v2"
    return cfg


ALGORITHMS = ["v2", "v3"]


def is_model(hint):
    return isinstance(hint, type) and hasattr(hint, "from_map") and hasattr(hint, "to_map")


def check_value(value, hint, path):
    """`value` has the type the SDK model declares for it, all the way down."""
    origin = typing.get_origin(hint)
    if origin is list:
        assert isinstance(value, list), f"{path}: {value!r} is not a list"
        for i, item in enumerate(value):
            check_value(item, typing.get_args(hint)[0], f"{path}[{i}]")
    elif origin is dict:
        assert isinstance(value, dict), f"{path}: {value!r} is not an object"
    elif is_model(hint):
        assert isinstance(value, hint), f"{path}: {value!r} is not a {hint.__name__}"
        check_fields(value, path)
    elif hint is bool:
        assert isinstance(value, bool), f"{path}: {value!r} is not a bool"
    elif hint is int:
        assert isinstance(value, int) and not isinstance(value, bool), f"{path}: {value!r} is not an int"
    elif hint is float:
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{path}: {value!r} is not a float"
    elif hint is str:
        assert isinstance(value, str), f"{path}: {value!r} is not a str"
    elif hint is not typing.Any:
        raise AssertionError(f"{path}: no check for the SDK type {hint!r}")


def check_fields(model, path):
    for attr, hint in typing.get_type_hints(type(model).__init__).items():
        if attr != "return" and getattr(model, attr) is not None:
            check_value(getattr(model, attr), hint, f"{path}.{attr}")


def subset_diff(sent, read, path="body"):
    """Where `sent` (the emulator's JSON) has something `read` (the model's to_map) has not."""
    if isinstance(sent, dict):
        if not isinstance(read, dict):
            return [f"{path}: the model reads no object here"]
        out = []
        for key, value in sent.items():
            if key not in read:
                out.append(f"{path}.{key}: not a field of the SDK model")
            else:
                out.extend(subset_diff(value, read[key], f"{path}.{key}"))
        return out
    if isinstance(sent, list):
        if not isinstance(read, list) or len(read) != len(sent):
            return [f"{path}: the model reads no list of {len(sent)} here"]
        return [d for i, (a, b) in enumerate(zip(sent, read)) for d in subset_diff(a, b, f"{path}[{i}]")]
    return [] if sent == read else [f"{path}: sent {sent!r}, the model holds {read!r}"]


def check_answer(body_model, raw):
    """The emulator's raw answer against the SDK model it was read into."""
    assert not subset_diff(raw, body_model.to_map()), subset_diff(raw, body_model.to_map())
    check_fields(body_model, type(body_model).__name__)


def recorded(client):
    """Keeps each raw answer body the client receives, before the SDK reads it."""
    bodies = []

    def recording(send):
        def record(*args):
            answer = send(*args)
            bodies.append(copy.deepcopy(answer.get("body")))
            return answer

        return record

    # Generated clients send through call_api; sts sends RPC-style through do_rpcrequest.
    client.call_api = recording(client.call_api)
    client.do_rpcrequest = recording(client.do_rpcrequest)
    return bodies


def call(client, bodies, method, request):
    """Calls one action through the SDK and checks its answer field by field (`request` None:
    an action that takes no parameters)."""
    response = getattr(client, method)() if request is None else getattr(client, method)(request)
    check_answer(response.body, bodies[-1])
    return response


def test_the_field_check_can_fail():
    body = ecd_models.DescribeFotaTasksResponseBody()
    raw = {"RequestId": "r", "FotaTasks": [{"TaskUid": "aot-1", "Size": "12"}]}
    with pytest.raises(AssertionError, match=r"size: '12' is not an int"):
        check_answer(body.from_map(copy.deepcopy(raw)), raw)
    raw = {"RequestId": "r", "FotaTasks": [{"TaskUID": "aot-1"}]}
    with pytest.raises(AssertionError, match=r"TaskUID: not a field of the SDK model"):
        check_answer(ecd_models.DescribeFotaTasksResponseBody().from_map(copy.deepcopy(raw)), raw)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_ecd_fota_tasks(emulator, algorithm):
    client = EcdClient(config(emulator, algorithm))
    bodies = recorded(client)
    resp = call(client, bodies, "describe_fota_tasks", ecd_models.DescribeFotaTasksRequest(region_id="cn-hangzhou", max_results=2))
    assert len(resp.body.fota_tasks) == 2
    assert resp.body.next_token
    assert resp.body.fota_tasks[0].task_uid.startswith("aot-")
    assert resp.body.fota_tasks[0].size > 0
    rest = call(
        client,
        bodies,
        "describe_fota_tasks",
        ecd_models.DescribeFotaTasksRequest(region_id="cn-hangzhou", max_results=2, next_token=resp.body.next_token),
    )
    assert len(rest.body.fota_tasks) == 1
    upd = call(
        client,
        bodies,
        "update_fota_task",
        ecd_models.UpdateFotaTaskRequest(region_id="cn-hangzhou", task_uid="aot-hz0002", user_status="Running"),
    )
    assert upd.body.request_id
    again = call(
        client, bodies, "describe_fota_tasks", ecd_models.DescribeFotaTasksRequest(region_id="cn-hangzhou", task_uid=["aot-hz0002"])
    )
    assert [t.status for t in again.body.fota_tasks] == ["Running"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_ecd_desktops_and_maintenance(emulator, algorithm):
    client = EcdClient(config(emulator, algorithm))
    bodies = recorded(client)
    resp = call(client, bodies, "describe_desktops", ecd_models.DescribeDesktopsRequest(region_id="cn-shanghai", max_results=100))
    assert resp.body.total_count == 20
    ids = [d.desktop_id for d in resp.body.desktops[:3]]
    call(
        client,
        bodies,
        "set_desktop_maintenance",
        ecd_models.SetDesktopMaintenanceRequest(region_id="cn-shanghai", mode="ENTER", desktop_ids=ids),
    )
    got = call(client, bodies, "describe_desktops", ecd_models.DescribeDesktopsRequest(region_id="cn-shanghai", desktop_id=ids))
    assert all("UnderMaintenance" in d.management_flags for d in got.body.desktops)
    call(
        client,
        bodies,
        "set_desktop_maintenance",
        ecd_models.SetDesktopMaintenanceRequest(region_id="cn-shanghai", mode="EXIT", desktop_ids=ids),
    )
    got = call(client, bodies, "describe_desktops", ecd_models.DescribeDesktopsRequest(region_id="cn-shanghai", desktop_id=ids))
    assert all(d.management_flags == ["NoFlag"] for d in got.body.desktops)


def edit_state(host, change):
    """Changes the emulator's state through its admin API (GET, change, PUT)."""
    with urllib.request.urlopen(f"http://{host}/_emulator/state") as r:
        state = json.load(r)
    change(state)
    put = urllib.request.Request(
        f"http://{host}/_emulator/state", data=json.dumps(state).encode(), method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(put) as r:
        assert r.status == 204


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_ecd_people_on_desktops(emulator, algorithm):
    """Who works on a desktop (DescribeDesktops' people fields and filters,
    DescribeDesktopSessions), maintenance that waits for them, DisconnectDesktopSessions,
    and console messages: every answer read by the SDK's own models."""
    client = EcdClient(config(emulator, algorithm))
    bodies = recorded(client)
    index = 12 if algorithm == "v2" else 13
    user, other = f"user-{algorithm}", f"other-{algorithm}"
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")

    def people(state):
        d = state["ecd"]["cn-shanghai"]["desktops"][index]
        d["Sessions"] = [{"EndUserId": user, "EstablishmentTime": now}]
        d["EndUserIds"] = [user, other]
        d["DesktopGroupId"] = f"dg-{algorithm}"
        d["PolicyGroupId"] = f"pg-{algorithm}"
        d["PolicyGroupIdList"] = [f"pg-{algorithm}", "pg-shared"]
        d["Tags"] = [{"Key": "team", "Value": algorithm}]
        state["consoleMessages"] = [
            {"MessageId": "msg-published", "Status": "Published", "MessageType": "NOTIFICATION", "TargetType": "Tag"},
            {"MessageId": "msg-draft", "Status": "Init", "MessageType": "NOTIFICATION", "TargetType": "Tag"},
        ]

    edit_state(emulator, people)
    for request in [
        ecd_models.DescribeDesktopsRequest(region_id="cn-shanghai", desktop_group_id=f"dg-{algorithm}"),
        ecd_models.DescribeDesktopsRequest(region_id="cn-shanghai", policy_group_id=f"pg-{algorithm}"),
        ecd_models.DescribeDesktopsRequest(region_id="cn-shanghai", end_user_id=[other]),
        ecd_models.DescribeDesktopsRequest(
            region_id="cn-shanghai", tag=[ecd_models.DescribeDesktopsRequestTag(key="team", value=algorithm)]
        ),
    ]:
        got = call(client, bodies, "describe_desktops", request).body.desktops
        assert len(got) == 1, request
        d = got[0]
        assert (d.connection_status, [s.end_user_id for s in d.sessions]) == ("Connected", [user])
        assert d.policy_group_id_list == [f"pg-{algorithm}", "pg-shared"]
    desktop_id = d.desktop_id

    # ENTER waits for the user: the desktop drains.
    call(
        client,
        bodies,
        "set_desktop_maintenance",
        ecd_models.SetDesktopMaintenanceRequest(region_id="cn-shanghai", mode="ENTER", desktop_ids=[desktop_id]),
    )
    got = call(client, bodies, "describe_desktops", ecd_models.DescribeDesktopsRequest(region_id="cn-shanghai", desktop_id=[desktop_id]))
    assert got.body.desktops[0].management_flags == ["EnterMaintenance"]
    sessions = call(
        client,
        bodies,
        "describe_desktop_sessions",
        ecd_models.DescribeDesktopSessionsRequest(
            region_id="cn-shanghai", desktop_id=[desktop_id], session_status="Connected", page_number=1, page_size=100
        ),
    ).body
    assert sessions.total_count == 1
    assert (sessions.sessions[0].end_user_id, sessions.sessions[0].session_status) == (user, "Connected")

    # The session is disconnected (the other user was never connected): then it is maintained.
    answer = call(
        client,
        bodies,
        "disconnect_desktop_sessions",
        ecd_models.DisconnectDesktopSessionsRequest(
            region_id="cn-shanghai",
            sessions=[
                ecd_models.DisconnectDesktopSessionsRequestSessions(desktop_id=desktop_id, end_user_id=user),
                ecd_models.DisconnectDesktopSessionsRequestSessions(desktop_id=desktop_id, end_user_id=other),
            ],
        ),
    ).body
    assert [(s.desktop_id, s.end_user_id) for s in answer.invalid_sessions] == [(desktop_id, other)]
    got = call(client, bodies, "describe_desktops", ecd_models.DescribeDesktopsRequest(region_id="cn-shanghai", desktop_id=[desktop_id]))
    assert got.body.desktops[0].management_flags == ["UnderMaintenance"]
    assert got.body.desktops[0].connection_status == "Disconnected"
    ended = call(
        client,
        bodies,
        "describe_desktop_sessions",
        ecd_models.DescribeDesktopSessionsRequest(region_id="cn-shanghai", desktop_id=[desktop_id], session_status="Disconnected"),
    ).body
    assert [s.end_user_id for s in ended.sessions] == [user] and ended.sessions[0].session_end_time
    with pytest.raises(TeaException, match="Sessions"):
        client.disconnect_desktop_sessions(
            ecd_models.DisconnectDesktopSessionsRequest(
                region_id="cn-shanghai",
                sessions=[
                    ecd_models.DisconnectDesktopSessionsRequestSessions(desktop_id=desktop_id, end_user_id=f"u{i}")
                    for i in range(21)
                ],
            )
        )
    call(
        client,
        bodies,
        "set_desktop_maintenance",
        ecd_models.SetDesktopMaintenanceRequest(region_id="cn-shanghai", mode="EXIT", desktop_ids=[desktop_id]),
    )

    listed = call(client, bodies, "describe_console_messages", ecd_models.DescribeConsoleMessagesRequest(message_ids=["msg-published"])).body
    assert listed.total_count == "1" and listed.message_list[0].status == "Published"
    assert call(client, bodies, "send_console_message", ecd_models.SendConsoleMessageRequest(message_id="msg-published")).body.success is True
    with pytest.raises(TeaException, match="InvalidMessageStatus"):
        client.send_console_message(ecd_models.SendConsoleMessageRequest(message_id="msg-draft"))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_ecd_image_updates_desktop_by_desktop(emulator, algorithm):
    """FOTA per desktop: DescribeFotaPendingDesktops lists who waits for a task's version,
    ApproveFotaUpdate updates one Running desktop nobody uses (a connected one is refused),
    DescribeDesktopInfo shows Updating and then the new CurrentAppVersion, and the task's
    PendingDesktopCount falls; one scripted to fail ends Failed."""
    client = EcdClient(config(emulator, algorithm))
    bodies = recorded(client)
    region = "cn-hangzhou" if algorithm == "v2" else "cn-shanghai"
    tag = "hz" if algorithm == "v2" else "sh"
    task = call(client, bodies, "describe_fota_tasks", ecd_models.DescribeFotaTasksRequest(region_id=region, task_uid=[f"aot-{tag}0001"]))
    task = task.body.fota_tasks[0]
    before = task.pending_desktop_count
    pending = call(
        client,
        bodies,
        "describe_fota_pending_desktops",
        ecd_models.DescribeFotaPendingDesktopsRequest(region_id=region, task_uid=task.task_uid, max_results=10),
    ).body
    assert len(pending.fota_pending_desktops) == 10 and pending.next_token
    # Past the first few, which the default dataset has in someone's maintenance.
    free, failing, busy = [d.desktop_id for d in pending.fota_pending_desktops[6:9]]
    assert all(d.current_app_version != task.app_version for d in pending.fota_pending_desktops)
    # Every tenth desktop of the dataset is stopped (Status 5), the others run (2).
    assert [d.status for d in pending.fota_pending_desktops[6:10]] == [2, 2, 2, 5]
    stopped = pending.fota_pending_desktops[9].desktop_id
    with pytest.raises(TeaException) as refused:
        client.approve_fota_update(ecd_models.ApproveFotaUpdateRequest(region_id=region, desktop_id=stopped, app_version=task.app_version))
    assert refused.value.code == "IncorrectDesktopStatus"

    def script(state):
        r = state["ecd"][region]
        r["fotaUpdateSeconds"] = 600
        r["fotaFailures"] = [failing]
        for d in r["desktops"]:
            if d["DesktopId"] == busy:
                d["Sessions"] = [{"EndUserId": "alice", "EstablishmentTime": "2026-12-01T08:00Z"}]

    edit_state(emulator, script)
    for d in (free, failing):
        call(client, bodies, "approve_fota_update", ecd_models.ApproveFotaUpdateRequest(region_id=region, desktop_id=d, app_version=task.app_version))
    with pytest.raises(TeaException) as refused:
        client.approve_fota_update(ecd_models.ApproveFotaUpdateRequest(region_id=region, desktop_id=busy, app_version=task.app_version))
    assert refused.value.code == "IncorrectDesktopStatus.Connected"
    info = lambda: {
        d.desktop_id: d
        for d in call(
            client, bodies, "describe_desktop_info", ecd_models.DescribeDesktopInfoRequest(region_id=region, desktop_id=[free, failing])
        ).body.desktops
    }
    updating = info()
    assert "Updating" in updating[free].management_flag and updating[free].current_app_version != task.app_version

    # The updates end (the module's emulator keeps its clock: other tests sign with real time).
    def finish(state):
        for u in state["ecd"][region]["fotaUpdates"]:
            u["until"] = "2000-01-01T00:00:00Z"

    edit_state(emulator, finish)
    done = info()
    assert (done[free].current_app_version, done[free].desktop_status) == (task.app_version, "Running")
    assert "Updating" not in done[free].management_flag
    assert done[failing].desktop_status == "Failed" and done[failing].current_app_version != task.app_version
    after = call(client, bodies, "describe_fota_tasks", ecd_models.DescribeFotaTasksRequest(region_id=region, task_uid=[task.task_uid]))
    assert after.body.fota_tasks[0].pending_desktop_count == before - 1


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_ecd_desktop_tags(emulator, algorithm):
    """The tag actions a window records its desktops with, and the Tags DescribeDesktops answers."""
    client = EcdClient(config(emulator, algorithm))
    bodies = recorded(client)
    gws = "ALIYUN::GWS::INSTANCE"
    listed = call(client, bodies, "describe_desktops", ecd_models.DescribeDesktopsRequest(region_id="cn-shanghai", max_results=100))
    ids = [d.desktop_id for d in listed.body.desktops[5:8]]
    key = f"ops.alicloud.dev/window-conf{algorithm}"
    call(
        client,
        bodies,
        "tag_resources",
        ecd_models.TagResourcesRequest(
            region_id="cn-shanghai",
            resource_type=gws,
            resource_id=ids,
            tag=[ecd_models.TagResourcesRequestTag(key=key, value="default/conformance")],
        ),
    )
    got = call(client, bodies, "describe_desktops", ecd_models.DescribeDesktopsRequest(region_id="cn-shanghai", desktop_id=ids))
    assert all({"Key": key, "Value": "default/conformance"} in [t.to_map() for t in d.tags] for d in got.body.desktops)
    found = call(
        client,
        bodies,
        "list_tag_resources",
        ecd_models.ListTagResourcesRequest(
            region_id="cn-shanghai", resource_type=gws, tag=[ecd_models.ListTagResourcesRequestTag(key=key)]
        ),
    )
    assert sorted(r.resource_id for r in found.body.tag_resources) == sorted(ids)
    assert {(r.resource_type, r.tag_key, r.tag_value) for r in found.body.tag_resources} == {(gws, key, "default/conformance")}
    call(
        client,
        bodies,
        "untag_resources",
        ecd_models.UntagResourcesRequest(region_id="cn-shanghai", resource_type=gws, resource_id=ids, tag_key=[key]),
    )
    found = call(
        client,
        bodies,
        "list_tag_resources",
        ecd_models.ListTagResourcesRequest(region_id="cn-shanghai", resource_type=gws, resource_id=ids),
    )
    assert found.body.tag_resources == []
    # The documented limits: 50 ids a call, keys that are not the cloud's own.
    with pytest.raises(TeaException, match="ResourceId"):
        client.tag_resources(
            ecd_models.TagResourcesRequest(
                region_id="cn-shanghai",
                resource_type=gws,
                resource_id=[f"ecd-x{i}" for i in range(51)],
                tag=[ecd_models.TagResourcesRequestTag(key=key, value="v")],
            )
        )
    with pytest.raises(TeaException, match="InvalidTagKey.Malformed"):
        client.tag_resources(
            ecd_models.TagResourcesRequest(
                region_id="cn-shanghai",
                resource_type=gws,
                resource_id=ids,
                tag=[ecd_models.TagResourcesRequestTag(key="acs:owner", value="v")],
            )
        )


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_swas_images_and_sharing(emulator, algorithm):
    client = SwasClient(config(emulator, algorithm))
    bodies = recorded(client)
    resp = call(client, bodies, "list_custom_images", swas_models.ListCustomImagesRequest(region_id="cn-hangzhou", page_size=100))
    assert resp.body.total_count == "6"  # a string in the SDK's model too
    target = [i for i in resp.body.custom_images if not i.in_share][0].image_id
    call(
        client,
        bodies,
        "modify_image_share_status",
        swas_models.ModifyImageShareStatusRequest(
            region_id="cn-hangzhou", image_id=target, operation="Share", client_token=f"conf-{algorithm}"
        ),
    )
    after = call(
        client, bodies, "list_custom_images", swas_models.ListCustomImagesRequest(region_id="cn-hangzhou", image_ids=f'["{target}"]')
    )
    assert after.body.custom_images[0].in_share is True
    # Share as the SDK sends it (str(True), str(False)): False leaves shared images out.
    listed = call(
        client, bodies, "list_custom_images", swas_models.ListCustomImagesRequest(region_id="cn-hangzhou", share=True, page_size=100)
    )
    assert target in [i.image_id for i in listed.body.custom_images]
    unshared = call(
        client, bodies, "list_custom_images", swas_models.ListCustomImagesRequest(region_id="cn-hangzhou", share=False, page_size=100)
    )
    assert unshared.body.custom_images and not any(i.in_share for i in unshared.body.custom_images)
    # ImageIds comma-separated, as the SDK's documentation allows.
    both = call(
        client,
        bodies,
        "list_custom_images",
        swas_models.ListCustomImagesRequest(region_id="cn-hangzhou", image_ids=f"{target},m-hz0001"),
    )
    assert sorted(i.image_id for i in both.body.custom_images) == sorted([target, "m-hz0001"])
    call(
        client,
        bodies,
        "modify_image_share_status",
        swas_models.ModifyImageShareStatusRequest(region_id="cn-hangzhou", image_id=target, operation="UnShare"),
    )


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_appstream_ota_approval(emulator, algorithm):
    client = AppstreamClient(config(emulator, algorithm))
    bodies = recorded(client)
    group_id = "aig-hz0002" if algorithm == "v2" else "aig-hz0003"
    req = asc_models.ListAppInstanceGroupRequest(product_type="CloudApp", biz_region_id="cn-hangzhou", app_instance_group_id=group_id)
    resp = call(client, bodies, "list_app_instance_group", req)
    group = resp.body.app_instance_group_models[0]
    task_id = group.ota_info.task_id
    assert group.ota_info.new_ota_version
    start = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    approved = call(
        client,
        bodies,
        "approve_ota_task",
        asc_models.ApproveOtaTaskRequest(
            app_instance_group_id=group_id, biz_region_id="cn-hangzhou", task_id=task_id, ota_type="Fota", start_time=start
        ),
    )
    assert approved.body.code == "success"
    rotated = call(client, bodies, "list_app_instance_group", req).body.app_instance_group_models[0].ota_info.task_id
    assert rotated != task_id
    # ListOtaTask (every parameter in the form body) shows the approval the operator confirms.
    tasks = call(
        client,
        bodies,
        "list_ota_task",
        asc_models.ListOtaTaskRequest(app_instance_group_id=group_id, ota_type="Fota", page_number=1, page_size=10),
    )
    assert tasks.body.total_count >= 1
    newest = tasks.body.task_list[0]
    assert (newest.task_id, newest.ota_version, newest.task_start_time, newest.task_display_status) == (
        task_id,
        group.ota_info.new_ota_version,
        start,
        "STANDBY",
    )


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_appstream_groups_by_tag_and_a_failed_upgrade(emulator, algorithm):
    """Delivery groups carry Tags (the SDK's Tag filter chooses them), and an upgrade scripted
    to fail moves the group through MAINTAINING/UPGRADING to MAINTAIN_FAILED/UNAVAILABLE, with
    ListOtaTask's FAILED, as the SDK's models read them."""
    client = AppstreamClient(config(emulator, algorithm))
    bodies = recorded(client)
    tag = asc_models.ListAppInstanceGroupRequestTag(key="ring", value="canary")
    req = asc_models.ListAppInstanceGroupRequest(product_type="CloudApp", biz_region_id="cn-hangzhou", tag=[tag])
    groups = call(client, bodies, "list_app_instance_group", req).body.app_instance_group_models
    assert [g.app_instance_group_id for g in groups] == ["aig-hz0001"]
    assert [(t.key, t.value, t.scope) for t in groups[0].tags] == [("ring", "canary", "Custom")]
    group_id = "aig-hz0004" if algorithm == "v2" else "aig-sh0001"
    region = "cn-hangzhou" if algorithm == "v2" else "cn-shanghai"

    def script(state):
        for g in state["appstream"]["appInstanceGroups"]:
            if g["AppInstanceGroupId"] == group_id:
                g["UpgradeOutcomes"] = ["FAILED"]
                g["OtaInfo"]["NewOtaVersion"] = "1.5.0-R-20261115.100000"
                g["OtaInfo"]["TaskId"] = "ota-scripted-" + algorithm

    edit_state(emulator, script)
    start = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    call(
        client,
        bodies,
        "approve_ota_task",
        asc_models.ApproveOtaTaskRequest(
            app_instance_group_id=group_id, biz_region_id=region, task_id="ota-scripted-" + algorithm, ota_type="Fota", start_time=start
        ),
    )
    one = asc_models.ListAppInstanceGroupRequest(product_type="CloudApp", biz_region_id=region, app_instance_group_id=group_id)
    failed = call(client, bodies, "list_app_instance_group", one).body.app_instance_group_models[0]
    assert (failed.status, failed.resource_status, failed.ota_info.ota_version) == (
        "MAINTAIN_FAILED",
        "UNAVAILABLE",
        "1.4.0-R-20261001.100000",
    )
    tasks = call(
        client,
        bodies,
        "list_ota_task",
        asc_models.ListOtaTaskRequest(app_instance_group_id=group_id, ota_type="Fota", page_number=1, page_size=10),
    )
    assert tasks.body.task_list[0].task_display_status == "FAILED"


def test_sts_assume_role_with_oidc(emulator):
    """RRSA's call, anonymous and RPC-style as the SDK sends it by default; the credentials it
    hands out then sign an ecd call."""
    cfg = open_api_models.Config(endpoint=emulator, protocol="http", region_id="cn-hangzhou")
    client = StsClient(cfg)
    bodies = recorded(client)
    resp = call(
        client,
        bodies,
        "assume_role_with_oidc",
        sts_models.AssumeRoleWithOIDCRequest(
            role_arn="acs:ram::1234567890123456:role/ops-operator",
            oidcprovider_arn="acs:ram::1234567890123456:oidc-provider/ack-rrsa",
            oidctoken="eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2ln",
            role_session_name="conformance",
        ),
    )
    creds = resp.body.credentials
    assert creds.access_key_id.startswith("STS.") and creds.security_token
    with_sts = open_api_models.Config(
        access_key_id=creds.access_key_id,
        access_key_secret=creds.access_key_secret,
        security_token=creds.security_token,
        endpoint=emulator,
        protocol="http",
        region_id="cn-hangzhou",
    )
    ecd = EcdClient(with_sts)
    assert ecd.describe_fota_tasks(ecd_models.DescribeFotaTasksRequest(region_id="cn-hangzhou")).body.fota_tasks
    # The STS key acts in the role's account, as an assumed role.
    sts = StsClient(with_sts)
    who = call(sts, recorded(sts), "get_caller_identity", None)
    assert who.body.account_id == "1234567890123456"
    assert who.body.identity_type == "AssumedRoleUser"
    assert who.body.arn == "acs:ram::1234567890123456:assumed-role/ops-operator/conformance"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_sts_get_caller_identity(emulator, algorithm):
    """The account a long-term key acts in: the operator keys quotas, conflicts and drains by it."""
    client = StsClient(config(emulator, algorithm))
    bodies = recorded(client)
    who = call(client, bodies, "get_caller_identity", None)
    assert who.body.account_id == "1866226837513800"
    assert who.body.identity_type == "RAMUser"
    assert who.body.arn.startswith("acs:ram::1866226837513800:user/")
    assert who.body.user_id and who.body.request_id


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_errors_reach_the_sdk_with_code_and_request_id(emulator, algorithm):
    cfg = config(emulator, algorithm)
    cfg.access_key_secret = "wrong"
    client = EcdClient(cfg)
    with pytest.raises(TeaException) as err:
        client.describe_fota_tasks(ecd_models.DescribeFotaTasksRequest(region_id="cn-hangzhou"))
    assert err.value.code == "SignatureDoesNotMatch"
    assert err.value.data["RequestId"]
    good = SwasClient(config(emulator, algorithm))
    with pytest.raises(TeaException) as err:
        good.modify_image_share_status(
            swas_models.ModifyImageShareStatusRequest(region_id="cn-hangzhou", image_id="m-missing", operation="Share")
        )
    assert err.value.code == "InvalidImageId.NotFound"
    assert err.value.status_code == 404
