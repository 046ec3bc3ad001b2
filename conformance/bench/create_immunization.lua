-- wrk script: POST a body (conformance/bench/immunization.json, or BODY_FILE). Requests spread
-- over the 1 000 patients run.sh creates (bench-patient-0 … bench-patient-999), so the
-- routine-vaccination checks read a realistic history per patient instead of one ever-growing one.
local file = assert(io.open(os.getenv("BODY_FILE") or "conformance/bench/immunization.json", "rb"))
local body = file:read("*a")
file:close()
-- A BODY_FILE (a transaction) is sent as it is, unless SPREAD is set.
local spread = body:find("Patient/bench%-patient%-0\"") ~= nil
  and (os.getenv("BODY_FILE") == nil or os.getenv("SPREAD") ~= nil)
local counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/fhir+json"
if os.getenv("WRK_TOKEN") then wrk.headers["Authorization"] = "Bearer " .. os.getenv("WRK_TOKEN") end
wrk.body = body

function request()
  if not spread then
    return wrk.format()
  end
  counter = counter + 1
  local patient = "Patient/bench-patient-" .. (counter % 1000) .. "\""
  return wrk.format(nil, nil, nil, (body:gsub("Patient/bench%-patient%-0\"", patient)))
end
