"""Prints a short summary of the emulator's state (GET /_emulator/state on stdin)."""
import json
import sys

s = json.load(sys.stdin)
for region, r in s["ecd"].items():
    tasks = ", ".join("%s=%s" % (t["TaskUid"], t["Status"]) for t in r["fotaTasks"])
    maint = sum(1 for d in r["desktops"] if {"UnderMaintenance", "EnterMaintenance"} & set(d["ManagementFlags"]))
    print("  ecd %s: FOTA tasks %s; %d of %d desktops in maintenance" % (region, tasks, maint, len(r["desktops"])))
for region, r in s["swas"].items():
    shared = [i["ImageId"] for i in r["customImages"] if i["InShare"]]
    print("  swas %s: custom images shared to ECS: %s" % (region, ", ".join(shared) or "none"))
for g in s["appstream"]["appInstanceGroups"]:
    up = g.get("ScheduledUpgrade")
    sched = ", upgrade to %s approved for %s" % (up["Version"], up["StartTime"]) if up else ""
    print("  appstream %s: version %s%s" % (g["AppInstanceGroupId"], g["OtaInfo"]["OtaVersion"], sched))
