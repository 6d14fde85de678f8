-- Argo CD health check for the ops.alicloud.dev kinds (FotaTaskPolicy,
-- DesktopMaintenanceWindow, ImageShare, OtaSchedule, UpdateRollout). Install it under
-- resource.customizations.health.ops.alicloud.dev_<Kind> in argocd-cm.
-- Degraded: a person must act (Reason::needs_attention; tests/deploy.rs holds them equal).
local degraded = {
  InvalidSpec = true, NotFound = true, Conflict = true, CredentialsInvalid = true,
  CloudRejected = true, StartTimeInPast = true, PartiallyMaintained = true, UpgradeFailed = true,
  PausedByFailures = true,
}
-- Suspended: nothing happens until a person says so (Reason::health; tests/deploy.rs).
local suspended = { Suspended = true, Paused = true, WaitingForPromotion = true, }
local hs = { status = "Progressing", message = "Waiting for the operator" }
if obj.status == nil then
  return hs
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= obj.metadata.generation then
  hs.message = "The operator has not seen the latest spec yet"
  return hs
end
local ready = nil
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then
      ready = c
    end
  end
end
if ready == nil then
  return hs
end
if ready.status == "True" then
  return { status = "Healthy", message = ready.message }
end
if suspended[ready.reason] then
  return { status = "Suspended", message = ready.message }
end
if degraded[ready.reason] then
  return { status = "Degraded", message = ready.reason .. ": " .. (ready.message or "") }
end
return { status = "Progressing", message = ready.reason .. ": " .. (ready.message or "") }
