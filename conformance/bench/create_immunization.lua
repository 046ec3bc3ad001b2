-- wrk script: POST conformance/bench/immunization.json (an Immunization of Patient/bench-patient).
local file = assert(io.open(os.getenv("BODY_FILE") or "conformance/bench/immunization.json", "rb"))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/fhir+json"
wrk.body = file:read("*a")
file:close()
