-- Shared by the bench scripts: settings from the environment, a thread id per wrk thread,
-- and a done() that prints one machine-readable line for tests/bench/run.py.
key = os.getenv("BENCH_KEY")
accounts = tonumber(os.getenv("BENCH_ACCOUNTS") or "10000")
prefix = os.getenv("BENCH_ACCOUNT_PREFIX") or "acct-"
run_id = os.getenv("BENCH_RUN") or tostring(os.time())
counter = 0

local created = 0
function setup(thread)
  created = created + 1
  thread:set("thread_id", created)
end

function init(args)
  math.randomseed(thread_id * 7919 + os.time())
end

-- Unique per request across threads and runs: run id, thread id, counter.
function next_key()
  counter = counter + 1
  return run_id .. "-" .. thread_id .. "-" .. counter
end

function pick_account()
  return prefix .. math.random(0, accounts - 1)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "errors_connect": %d, "errors_read": %d, "errors_write": %d, ' ..
    '"errors_status": %d, "errors_timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
