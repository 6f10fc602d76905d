-- POST /v1/batch with BENCH_BATCH consumes (1 credit each) over BENCH_ACCOUNTS accounts, not
-- atomic. The Idempotency-Key header is unique per request, so each command gets its own key
-- '<header>#<index>'.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
require "common"

local size = tonumber(os.getenv("BENCH_BATCH") or "1000")

function request()
  local items = {}
  for i = 1, size do
    items[i] = '{"op": "consume", "account_id": "' .. pick_account() ..
      '", "amount": 1, "operation": "BENCH"}'
  end
  local body = '{"commands": [' .. table.concat(items, ", ") .. ']}'
  return wrk.format("POST", "/v1/batch", {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = next_key(),
  }, body)
end
