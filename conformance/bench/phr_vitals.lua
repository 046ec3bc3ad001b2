-- wrk script: POST a year of daily body weights (365 points, one request) to the PHR app API
-- (/phr/v1/persons/{PHR_PERSON}/vitals) with a parent's token (docs/phr-api.md). Every request
-- covers its own 365 days and carries its own Idempotency-Key, so each one stores 365 new
-- Observations instead of replaying or overwriting an earlier request.
local person = os.getenv("PHR_PERSON") or "bench-patient-0"
local thread_index = 0
local counter = 0
local threads = 0

function setup(thread)
  thread:set("thread_index", threads)
  threads = threads + 1
end

function init(args)
  thread_index = tonumber(wrk.thread:get("thread_index")) or 0
end

wrk.method = "POST"
wrk.path = "/phr/v1/persons/" .. person .. "/vitals"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("WRK_TOKEN") or "")

-- 2000-01-01 12:00 UTC; days are counted from it.
local epoch = os.time({year = 2000, month = 1, day = 1, hour = 12})

function request()
  counter = counter + 1
  -- Threads take interleaved blocks of 365 days, so no two requests share a day.
  local first_day = ((counter - 1) * 64 + thread_index) * 365
  local points = {}
  for i = 0, 364 do
    local day = os.date("!%Y-%m-%d", epoch + (first_day + i) * 86400)
    points[#points + 1] = string.format('{"at":"%sT07:00:00+09:00","value":%d.%d}', day, 8 + math.floor(i / 100), i % 10)
  end
  local body = '{"personId":"' .. person .. '","series":[{"kind":"bodyWeight","unit":"kg","points":['
    .. table.concat(points, ",") .. ']}]}'
  wrk.headers["Idempotency-Key"] = "bench-" .. thread_index .. "-" .. counter
  return wrk.format(nil, nil, nil, body)
end
