-- wrk script: every request gets its own URL, so every request is a cold render.
-- Arguments (after `--`): a Lua format for the suffix, e.g. "&bg=%06x" or "?n=%d", and the
-- counter's start; the suffix of request n is string.format(format, start + n).
-- At the end it prints "issued <n>": requests sent, answered or still in flight.
-- Run with -t1 (each wrk thread has its own counter).
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  suffix = args[1]
  start = tonumber(args[2])
  counter = start
end

function request()
  counter = counter + 1
  return wrk.format(nil, wrk.path .. string.format(suffix, counter % 0x1000000))
end

function done(summary, latency, requests)
  local issued = 0
  for _, thread in ipairs(threads) do
    issued = issued + thread:get("counter") - thread:get("start")
  end
  io.write(string.format("issued %d\n", issued))
end
