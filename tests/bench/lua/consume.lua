-- POST a consumption of 1 credit to an account picked from BENCH_ACCOUNTS accounts named
-- BENCH_ACCOUNT_PREFIX<n> (one account when BENCH_ACCOUNTS=1); every request has its own
-- Idempotency-Key. BENCH_PATH=noop aims the same request at the no-op ceiling (api/bench.py).
-- BENCH_DELAY_MS > 0 paces each connection (scenario 6); BENCH_OPERATION names the operation.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
require "common"

local body = '{"amount": 1, "operation": "' .. (os.getenv("BENCH_OPERATION") or "BENCH") .. '"}'
local noop = os.getenv("BENCH_PATH") == "noop"
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")

function request()
  local account = pick_account()
  local path
  if noop then
    path = "/v1/bench/noop/" .. account
  else
    path = "/v1/accounts/" .. account .. "/consumptions"
  end
  return wrk.format("POST", path, {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = next_key(),
  }, body)
end

if delay_ms > 0 then
  function delay()
    return delay_ms
  end
end
