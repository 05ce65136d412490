-- Argo CD health of a SchemaRestore, from its Succeeded condition (its
-- Finished condition is True exactly when Succeeded is no longer Unknown).
-- True: Healthy. False: Degraded (a failed restore stays Degraded until the
-- object is removed from Git or recreated: a restore never runs twice).
-- Unknown (queued, running, cleaning up) or no status yet: Progressing.
-- A finished restore keeps its verdict when its generation moves later: the
-- spec is immutable, so no edit can make it run again. A running one whose
-- edit the operator reported (SpecChangeIgnored) goes on with its first spec.
-- "Reason: message" for a verdict; a running restore's message says it all.
local function describe(c, fallback)
  local reason = c.reason
  local message = c.message
  if reason ~= nil and reason ~= "" and message ~= nil and message ~= "" then
    return reason .. ": " .. message
  end
  if reason ~= nil and reason ~= "" then
    return reason
  end
  if message ~= nil and message ~= "" then
    return message
  end
  return fallback
end

local hs = {status = "Progressing", message = "Waiting for the operator to start the restore"}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end

local succeeded = nil
local ignored = nil
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Succeeded" then
    succeeded = c
  elseif c.type == "SpecChangeIgnored" and c.status == "True" then
    ignored = c
  end
end
if succeeded == nil then
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
local stale = generation ~= nil and observed ~= nil and observed < generation

if succeeded.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(succeeded, "Restore succeeded")
elseif succeeded.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(succeeded, "Restore failed")
elseif stale and ignored == nil then
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
else
  if succeeded.message ~= nil and succeeded.message ~= "" then
    hs.message = succeeded.message
  else
    hs.message = describe(succeeded, "Restore in progress")
  end
  if stale then
    -- The operator saw the edit (SpecChangeIgnored): it runs its first spec.
    hs.message = hs.message .. " (the spec was edited after the restore started; edits are not applied)"
  end
  return hs
end
if stale then
  hs.message = hs.message .. " (the spec was edited after the restore finished; edits are not applied)"
end
return hs
