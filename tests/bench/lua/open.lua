-- PUT a new account on every request (scenario 7): BENCH_ACCOUNT_PREFIX<run>-<thread>-<n>, so
-- every request touches an account no earlier request touched.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
require "common"

function request()
  return wrk.format("PUT", "/v1/accounts/" .. prefix .. next_key(), {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
  }, "{}")
end
