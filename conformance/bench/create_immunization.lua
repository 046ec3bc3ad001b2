-- wrk script: POST a JP-shaped Immunization for an existing Patient (PATIENT_ID from env).
local patient = os.getenv("PATIENT_ID") or "bench-patient"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/fhir+json"
wrk.body = [[{"resourceType":"Immunization","status":"completed",
"vaccineCode":{"coding":[{"system":"urn:oid:1.2.392.200119.4.403.1","code":"2.1","display":"沈降精製百日せきジフテリア破傷風不活化ポリオ混合ワクチン"}]},
"patient":{"reference":"Patient/]] .. patient .. [["},
"occurrenceDateTime":"2024-06-03T10:30:00+09:00","primarySource":true,
"lotNumber":"A123B","site":{"text":"左上腕"},"route":{"text":"皮下"},
"doseQuantity":{"value":0.5,"unit":"mL","system":"http://unitsofmeasure.org","code":"mL"},
"protocolApplied":[{"doseNumberPositiveInt":1}]}]]
