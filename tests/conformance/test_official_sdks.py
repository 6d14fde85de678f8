"""Drives the emulator with the official Alibaba Cloud Python SDKs, unchanged, under both
signing methods, and checks that every answer parses into the SDK's own models.

The emulator binary comes from EMULATOR_BIN (default: target/debug/alicloud-cloud-emulator).
"""

import datetime
import os
import pathlib
import subprocess

import pytest
from alibabacloud_appstream_center20210901 import models as asc_models
from alibabacloud_appstream_center20210901.client import Client as AppstreamClient
from alibabacloud_ecd20200930 import models as ecd_models
from alibabacloud_ecd20200930.client import Client as EcdClient
from alibabacloud_swas_open20200601 import models as swas_models
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


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_ecd_fota_tasks(emulator, algorithm):
    client = EcdClient(config(emulator, algorithm))
    resp = client.describe_fota_tasks(ecd_models.DescribeFotaTasksRequest(region_id="cn-hangzhou", max_results=2))
    assert isinstance(resp.body, ecd_models.DescribeFotaTasksResponseBody)
    assert len(resp.body.fota_tasks) == 2
    assert resp.body.next_token
    assert resp.body.fota_tasks[0].task_uid.startswith("aot-")
    assert isinstance(resp.body.fota_tasks[0].size, int)
    rest = client.describe_fota_tasks(
        ecd_models.DescribeFotaTasksRequest(region_id="cn-hangzhou", max_results=2, next_token=resp.body.next_token)
    )
    assert len(rest.body.fota_tasks) == 1
    upd = client.update_fota_task(
        ecd_models.UpdateFotaTaskRequest(region_id="cn-hangzhou", task_uid="aot-hz0002", user_status="Running")
    )
    assert upd.body.request_id
    again = client.describe_fota_tasks(ecd_models.DescribeFotaTasksRequest(region_id="cn-hangzhou", task_uid=["aot-hz0002"]))
    assert [t.status for t in again.body.fota_tasks] == ["Running"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_ecd_desktops_and_maintenance(emulator, algorithm):
    client = EcdClient(config(emulator, algorithm))
    resp = client.describe_desktops(ecd_models.DescribeDesktopsRequest(region_id="cn-shanghai", max_results=100))
    assert isinstance(resp.body, ecd_models.DescribeDesktopsResponseBody)
    assert resp.body.total_count == 20
    ids = [d.desktop_id for d in resp.body.desktops[:3]]
    client.set_desktop_maintenance(ecd_models.SetDesktopMaintenanceRequest(region_id="cn-shanghai", mode="ENTER", desktop_ids=ids))
    got = client.describe_desktops(ecd_models.DescribeDesktopsRequest(region_id="cn-shanghai", desktop_id=ids))
    assert all("UnderMaintenance" in d.management_flags for d in got.body.desktops)
    client.set_desktop_maintenance(ecd_models.SetDesktopMaintenanceRequest(region_id="cn-shanghai", mode="EXIT", desktop_ids=ids))
    got = client.describe_desktops(ecd_models.DescribeDesktopsRequest(region_id="cn-shanghai", desktop_id=ids))
    assert all(d.management_flags == ["NoFlag"] for d in got.body.desktops)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_swas_images_and_sharing(emulator, algorithm):
    client = SwasClient(config(emulator, algorithm))
    resp = client.list_custom_images(swas_models.ListCustomImagesRequest(region_id="cn-hangzhou", page_size=100))
    assert isinstance(resp.body, swas_models.ListCustomImagesResponseBody)
    assert str(resp.body.total_count) == "6"
    target = [i for i in resp.body.custom_images if not i.in_share][0].image_id
    client.modify_image_share_status(
        swas_models.ModifyImageShareStatusRequest(
            region_id="cn-hangzhou", image_id=target, operation="Share", client_token=f"conf-{algorithm}"
        )
    )
    after = client.list_custom_images(swas_models.ListCustomImagesRequest(region_id="cn-hangzhou", image_ids=f'["{target}"]'))
    assert after.body.custom_images[0].in_share is True
    client.modify_image_share_status(
        swas_models.ModifyImageShareStatusRequest(region_id="cn-hangzhou", image_id=target, operation="UnShare")
    )


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_appstream_ota_approval(emulator, algorithm):
    client = AppstreamClient(config(emulator, algorithm))
    group_id = "aig-hz0002" if algorithm == "v2" else "aig-hz0003"
    req = asc_models.ListAppInstanceGroupRequest(product_type="CloudApp", biz_region_id="cn-hangzhou", app_instance_group_id=group_id)
    resp = client.list_app_instance_group(req)
    assert isinstance(resp.body, asc_models.ListAppInstanceGroupResponseBody)
    group = resp.body.app_instance_group_models[0]
    task_id = group.ota_info.task_id
    assert group.ota_info.new_ota_version
    start = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    approved = client.approve_ota_task(
        asc_models.ApproveOtaTaskRequest(
            app_instance_group_id=group_id, biz_region_id="cn-hangzhou", task_id=task_id, ota_type="Fota", start_time=start
        )
    )
    assert isinstance(approved.body, asc_models.ApproveOtaTaskResponseBody)
    assert approved.body.code == "success"
    rotated = client.list_app_instance_group(req).body.app_instance_group_models[0].ota_info.task_id
    assert rotated != task_id
    # ListOtaTask (every parameter in the form body) shows the approval the operator confirms.
    tasks = client.list_ota_task(
        asc_models.ListOtaTaskRequest(app_instance_group_id=group_id, ota_type="Fota", page_number=1, page_size=10)
    )
    assert isinstance(tasks.body, asc_models.ListOtaTaskResponseBody)
    assert isinstance(tasks.body.total_count, int) and tasks.body.total_count >= 1
    newest = tasks.body.task_list[0]
    assert (newest.task_id, newest.ota_version, newest.task_start_time, newest.task_display_status) == (
        task_id,
        group.ota_info.new_ota_version,
        start,
        "STANDBY",
    )


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
