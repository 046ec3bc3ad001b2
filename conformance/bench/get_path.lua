-- wrk script: GET the path in env WRK_PATH with a FHIR Accept header.
wrk.method = "GET"
wrk.path = os.getenv("WRK_PATH") or "/healthz"
wrk.headers["Accept"] = "application/fhir+json"
if os.getenv("WRK_TOKEN") then wrk.headers["Authorization"] = "Bearer " .. os.getenv("WRK_TOKEN") end
