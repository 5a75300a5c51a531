//! The Lua scripts that make each broker step atomic in Redis.
//!
//! A claim never exists only in a worker's memory: the script that pops a message records it
//! in `unacked` / `unacked_index` before it returns, so a worker killed at any point leaves
//! the message where a restore (ours or a Python worker's) finds it.

use std::sync::LazyLock;

use redis::Script;

/// Moves due eta messages back to their lists, then claims up to `limit` messages.
///
/// - `KEYS[1]` `unacked`, `KEYS[2]` `unacked_index`, `KEYS[3..]` the lists to take from, most
///   urgent first;
/// - `ARGV[1]` limit, `ARGV[2]` now (UNIX seconds), `ARGV[3]` delivery-tag prefix, `ARGV[4]`
///   the number of queues `Q`, `ARGV[5..4+Q]` the queue names, `ARGV[5+Q..4+2Q]` the same as
///   JSON strings, then for each list the number (1-based) of its queue, then the time
///   (ISO-8601) for the dead list.
///
/// Returns `[next eta or "", tag, queue number, payload, tag, queue number, payload, ...]`; a
/// tag is empty for a payload that is not a JSON object, which the script moved to
/// `_celery_web.dead.<queue>` instead of claiming.
/// The `unacked` value is kombu's `[<envelope>, <exchange>, <routing key>]` with exchange `""`
/// and routing key = the queue, so a kombu restore puts the message back in the same queue.
pub(super) static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local limit = tonumber(ARGV[1])
local now = ARGV[2]
local queues = tonumber(ARGV[4])
for i = 1, queues do
  local queue = ARGV[4 + i]
  local eta = '_celery_web.eta.' .. queue
  local due = redis.call('ZRANGEBYSCORE', eta, '-inf', now, 'LIMIT', 0, 1000)
  for j = #due, 1, -1 do
    local member = due[j]
    local step = string.sub(member, 1, 1)
    local list = queue
    if step ~= '0' then list = queue .. '\6\22' .. step end
    redis.call('ZREM', eta, member)
    redis.call('RPUSH', list, string.sub(member, 3))
  end
end
local out = {''}
local claimed = 0
local fields = {}
local scores = {}
for k = 3, #KEYS do
  if claimed >= limit then break end
  local popped = redis.call('RPOP', KEYS[k], limit - claimed)
  if popped then
    local number = tonumber(ARGV[4 + 2 * queues + (k - 2)])
    local routing = ARGV[4 + queues + number]
    for _, payload in ipairs(popped) do
      if string.sub(payload, 1, 1) ~= '{' or string.sub(payload, -1) ~= '}' then
        -- Not an envelope: kept aside now, never put in unacked (a kombu restore would
        -- drop it); returned with an empty tag so the worker logs it.
        local queue = ARGV[4 + number]
        redis.call('LPUSH', '_celery_web.dead.' .. queue, '{"reason": "not a JSON object", '
          .. '"queue": ' .. cjson.encode(queue) .. ', "retired_at": ' .. cjson.encode(ARGV[#ARGV])
          .. ', "unacked": ' .. cjson.encode(payload) .. '}')
        out[#out + 1] = ''
        out[#out + 1] = tostring(number)
        out[#out + 1] = payload
      else
        claimed = claimed + 1
        local tag = ARGV[3] .. claimed
        fields[#fields + 1] = tag
        fields[#fields + 1] = '[' .. payload .. ', "", ' .. routing .. ']'
        scores[#scores + 1] = now
        scores[#scores + 1] = tag
        out[#out + 1] = tag
        out[#out + 1] = tostring(number)
        out[#out + 1] = payload
      end
    end
  end
end
if claimed > 0 then
  redis.call('HSET', KEYS[1], unpack(fields))
  redis.call('ZADD', KEYS[2], unpack(scores))
end
local next_eta = nil
for i = 1, queues do
  local first = redis.call('ZRANGE', '_celery_web.eta.' .. ARGV[4 + i], 0, 0, 'WITHSCORES')
  if first[2] and (next_eta == nil or tonumber(first[2]) < next_eta) then
    next_eta = tonumber(first[2])
  end
end
if next_eta then out[1] = tostring(next_eta) end
return out
"#,
    )
});

/// Parks a claimed message that is not due yet (a Python producer's countdown) in its eta set.
///
/// `KEYS[1]` `unacked`, `KEYS[2]` `unacked_index`, `KEYS[3]` the eta set; `ARGV[1]` tag,
/// `ARGV[2]` eta (UNIX seconds), `ARGV[3]` the member (`<step>|<envelope>`). Returns 1 when
/// the claim was still current.
pub(super) static PARK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
return 1
"#,
    )
});

/// Puts a delivered message back (visibility timeout, release), if the claim is unchanged.
///
/// `KEYS[1]` `unacked`, `KEYS[2]` `unacked_index`, `KEYS[3..]` the lists to push to; `ARGV[1]`
/// tag, `ARGV[2]` the `unacked` value read before, `ARGV[3]` the payload to push (marked
/// redelivered), `ARGV[4]` the latest lease score that may be restored (`+inf` to release):
/// a lease extended since the sweep read it is left alone. `RPUSH`, as kombu's restore: the
/// message is taken next. A tag whose value is gone is dropped from the index (kombu does the
/// same). Returns 1 when restored.
pub(super) static RESTORE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
if current ~= ARGV[2] then return 0 end
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if score and tonumber(score) > tonumber(ARGV[4]) then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
for k = 3, #KEYS do
  redis.call('RPUSH', KEYS[k], ARGV[3])
end
return 1
"#,
    )
});

/// Moves a delivered message to its queue's dead list, with the reason.
///
/// `KEYS[1]` `unacked`, `KEYS[2]` `unacked_index`, `KEYS[3]` the dead list; `ARGV[1]` tag,
/// `ARGV[2]` reason, `ARGV[3]` queue, `ARGV[4]` time (ISO-8601). The entry is a JSON object
/// `{"reason", "queue", "retired_at", "unacked"}` where `unacked` is the claim's `unacked`
/// value as text. Returns 1 when the claim was still current.
pub(super) static RETIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
local entry = '{"reason": ' .. cjson.encode(ARGV[2]) .. ', "queue": ' .. cjson.encode(ARGV[3])
  .. ', "retired_at": ' .. cjson.encode(ARGV[4]) .. ', "unacked": ' .. cjson.encode(current) .. '}'
redis.call('LPUSH', KEYS[3], entry)
return 1
"#,
    )
});

/// Releases the restore lock if this process still holds it. `KEYS[1]` the lock, `ARGV[1]`
/// the token it was taken with.
pub(super) static UNLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#,
    )
});
