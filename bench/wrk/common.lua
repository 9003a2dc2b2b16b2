-- Shared by the scenario scripts (loaded with dofile): numbers wrk's
-- threads (the global `tid`, 1..threads), reads the run's tenant prefix, and
-- reports non-2xx answers for bench/run.py's checks. Each script sets its
-- request once in init(), so wrk sends its pre-built request (no Lua per
-- request: wrk's fast path).
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end

function prefix()
  return os.getenv("BENCH_TENANT_PREFIX") or "bench"
end

-- Sends BENCH_TOKEN as a bearer token when the run has access control.
function authorize()
  local token = os.getenv("BENCH_TOKEN")
  if token and token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
end

function done(summary, latency, requests)
  io.write(string.format("BENCH non2xx=%d\n", summary.errors.status))
end
