-- POST pre-signed webhook bodies, cycling through a file of "signature<TAB>body" lines.
-- Each wrk thread takes every n-th line (its own offset), so no body is sent twice while
-- the file lasts. At the end, print one JSON line the bench parses.
local path = os.getenv("BENCH_BODIES")
local threads = {}
local counter = 0
local sigs, bodies = {}, {}

function setup(thread)
  thread:set("id", #threads)
  thread:set("nthreads", tonumber(os.getenv("BENCH_THREADS") or "1"))
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(path) do
    local tab = line:find("\t", 1, true)
    sigs[#sigs + 1] = line:sub(1, tab - 1)
    bodies[#bodies + 1] = line:sub(tab + 1)
  end
end

function request()
  local i = (counter * nthreads + id) % #bodies + 1
  counter = counter + 1
  return wrk.format("POST", "/webhook",
    {["Content-Type"] = "application/json", ["X-Hub-Signature-256"] = sigs[i]}, bodies[i])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"non2xx":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,' ..
    '"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
