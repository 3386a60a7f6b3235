-- wrk script for bench/exchange.py: drives POST /token-exchange (or GET /healthz) over HTTPS.
--
-- Arguments (after `--` on the wrk command line):
--   exchange <window_s> <cookies_file> <api_key> <origin>
--   healthz  <window_s>
--
-- exchange: every request carries a different JSAPI cookie (`linkedin_oauth_<KEY>=<value>`,
-- one value per line of <cookies_file>, each thread starting at its own offset and rotating),
-- an `Origin` header, and never a session cookie, so every request is a real exchange.
--
-- Exact accounting: requests are sent only during the first <window_s> seconds; after that
-- `delay()` holds each connection back, so that what is in flight finishes during the drain
-- that bench/exchange.py adds to wrk's -d. Every answer is then counted (and so can be compared
-- with what the upstream accepted), and throughput is the 200s received inside the window
-- divided by the window. `done()` prints one machine-readable `BENCH k=v ...` line.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_usec; } bench_timeval;
int gettimeofday(bench_timeval *tv, void *tz);
]]
local tv = ffi.new("bench_timeval")
local function now_us()
   ffi.C.gettimeofday(tv, nil)
   return tonumber(tv.tv_sec) * 1000000 + tonumber(tv.tv_usec)
end

---------------------------------------------------------------------------------------------
-- Main state: one table entry per thread (wrk's thread-table pattern).

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("id", #threads)
end

---------------------------------------------------------------------------------------------
-- Thread states.

local requests = {}   -- preformatted requests, rotated through
local next_index = 1
local deadline_us = 0
local started = false -- set by the first delay(): wrk calls request() once beforehand to
                      -- verify it, and that call sends nothing

-- Per-thread counters, read by done() through thread:get().
sent = 0              -- requests written
answered = 0          -- responses received (any status)
ok = 0                -- 200s
ok_window = 0         -- 200s received inside the window
non200 = 0
statuses = ""         -- "code:count,..." for non-200 codes
first_error = ""      -- the first non-200 body (truncated), for diagnosis

local status_counts = {}

function init(args)
   local mode, window_s = args[1], tonumber(args[2])
   deadline_us = now_us() + window_s * 1000000
   if mode == "healthz" then
      requests[1] = wrk.format("GET", "/healthz")
      return
   end
   local cookies_file, api_key, origin = args[3], args[4], args[5]
   local values = {}
   for line in io.lines(cookies_file) do
      if #line > 0 then
         table.insert(values, line)
      end
   end
   local prefix = "linkedin_oauth_" .. api_key .. "="
   for i, value in ipairs(values) do
      requests[i] = wrk.format("POST", "/token-exchange", {
         ["Cookie"] = prefix .. value,
         ["Origin"] = origin,
      })
   end
   -- Threads start at evenly spread offsets so that they do not send the same cookie together.
   local nthreads = tonumber(args[6]) or 1
   next_index = math.floor((id - 1) * #requests / nthreads) + 1
end

function delay()
   started = true
   if now_us() >= deadline_us then
      return 3600 * 1000 -- window over: send nothing more on this connection
   end
   return 0
end

function request()
   local r = requests[next_index]
   next_index = next_index + 1
   if next_index > #requests then
      next_index = 1
   end
   if started then
      sent = sent + 1
   end
   return r
end

function response(status, headers, body)
   answered = answered + 1
   if status == 200 then
      ok = ok + 1
      if now_us() <= deadline_us then
         ok_window = ok_window + 1
      end
   else
      non200 = non200 + 1
      status_counts[status] = (status_counts[status] or 0) + 1
      local parts = {}
      for code, count in pairs(status_counts) do
         table.insert(parts, code .. ":" .. count)
      end
      statuses = table.concat(parts, ",")
      if first_error == "" then
         first_error = string.sub(string.gsub(tostring(body), "%s+", " "), 1, 200)
      end
   end
end

---------------------------------------------------------------------------------------------
-- Main state again: the totals.

function done(summary, latency, _)
   local t = { sent = 0, answered = 0, ok = 0, ok_window = 0, non200 = 0 }
   local statuses, first_error = {}, ""
   for _, thread in ipairs(threads) do
      for k in pairs(t) do
         t[k] = t[k] + (thread:get(k) or 0)
      end
      local s = thread:get("statuses") or ""
      if s ~= "" then
         table.insert(statuses, s)
      end
      local e = thread:get("first_error") or ""
      if first_error == "" and e ~= "" then
         first_error = e
      end
   end
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%d runtime_us=%d sent=%d answered=%d ok=%d ok_window=%d non200=%d "
         .. "in_flight_at_stop=%d connect=%d read=%d write=%d timeout=%d status_errors=%d "
         .. "p50_us=%d p90_us=%d p99_us=%d mean_us=%.1f max_us=%d statuses=%s\n",
      summary.requests, summary.duration, t.sent, t.answered, t.ok, t.ok_window, t.non200,
      t.sent - t.answered, e.connect, e.read, e.write, e.timeout, e.status,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.mean, latency.max, table.concat(statuses, ",")))
   if first_error ~= "" then
      io.write("BENCH_FIRST_ERROR " .. first_error .. "\n")
   end
end
