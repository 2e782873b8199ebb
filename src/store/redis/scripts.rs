//! The Lua scripts that make each write all-or-nothing: Redis runs a script atomically, so no
//! other node's write lands in the middle of one. Those that touch several keys take the key
//! prefix as their first argument. They answer errors as `NOTFOUND`, `WRONGSTATE state`, `MISMATCH`, `NOCONV id` and
//! `TAKEN id`, which `tasks::script_error` turns into the store's.

use std::sync::LazyLock;

use redis::Script;

/// Appending to a task's log: the next seq in `task:{id}`, the next pos, the event in both
/// Streams.
const APPEND_FN: &str = r#"
local FINAL = {succeeded = true, failed = true, cancelled = true, interrupted = true}
local function append(p, id, ts, kind, data)
  local seq = redis.call('HINCRBY', p .. 'task:' .. id, 'last_seq', 1)
  local pos = redis.call('INCR', p .. 'pos')
  redis.call('XADD', p .. 'log:' .. id, seq .. '-0', 'pos', pos, 'ts', ts, 'type', kind, 'data', data)
  redis.call('XADD', p .. 'all', pos .. '-0', 'task', id, 'seq', seq, 'ts', ts, 'type', kind, 'data', data)
  return {seq, pos}
end
"#;

fn script(body: &str) -> Script {
    Script::new(&format!("{APPEND_FN}{body}"))
}

/// ARGV: prefix, id, idempotency key (or ''), fingerprint, task json, kind, requires json
/// (or ''), ts, first event's data. Answers `{1, num, seq, pos}` for a new task, or `{0, id}`
/// for the task an idempotency key already made.
pub(super) static CREATE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local p, id, idem = ARGV[1], ARGV[2], ARGV[3]
if idem ~= '' then
  local held = redis.call('HGET', p .. 'idem', idem)
  if held then
    local prior = redis.call('HGET', p .. 'task:' .. held, 'fingerprint')
    if prior then
      if prior == ARGV[4] then return {0, held} end
      return redis.error_reply('MISMATCH another request')
    end
  end
end
local num = redis.call('INCR', p .. 'tasknum')
local key = p .. 'task:' .. id
redis.call('HSET', key, 'json', ARGV[5], 'num', num, 'state', 'queued', 'last_seq', 0,
  'fingerprint', ARGV[4], 'kind', ARGV[6])
if ARGV[7] ~= '' then redis.call('HSET', key, 'requires', ARGV[7]) end
if idem ~= '' then
  redis.call('HSET', p .. 'idem', idem, id)
  redis.call('HSET', key, 'idem', idem)
end
redis.call('ZADD', p .. 'tasks', num, id)
redis.call('ZADD', p .. 'state:queued', num, id)
local at = append(p, id, ARGV[8], 'state', ARGV[9])
return {1, num, at[1], at[2]}
"#,
    )
});

/// ARGV: prefix, id, ts, then type and data of each event. Answers seq and pos of each.
pub(super) static APPEND: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local p, id = ARGV[1], ARGV[2]
local state = redis.call('HGET', p .. 'task:' .. id, 'state')
if not state then return redis.error_reply('NOTFOUND no such task') end
if FINAL[state] then return redis.error_reply('WRONGSTATE ' .. state) end
local out = {}
for i = 4, #ARGV, 2 do
  local at = append(p, id, ARGV[3], ARGV[i], ARGV[i + 1])
  out[#out + 1] = at[1]
  out[#out + 1] = at[2]
end
return out
"#,
    )
});

/// ARGV: prefix, id, new state, allowed states (`,a,b,`), started_at, finished_at, result,
/// event data, ts, node (or ''), conversation (or ''), its new updated_at, then the messages.
/// Answers the task's hash, as `HGETALL` would.
pub(super) static TRANSITION: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local p, id, to = ARGV[1], ARGV[2], ARGV[3]
local key = p .. 'task:' .. id
local state = redis.call('HGET', key, 'state')
if not state then return redis.error_reply('NOTFOUND no such task') end
if FINAL[state] or not string.find(ARGV[4], ',' .. state .. ',', 1, true) then
  return redis.error_reply('WRONGSTATE ' .. state)
end
local conversation = ARGV[11]
if conversation ~= '' then
  local ckey = p .. 'conv:' .. conversation
  if redis.call('EXISTS', ckey) == 0 then return redis.error_reply('NOCONV ' .. conversation) end
  local mkey = p .. 'convmsgs:' .. conversation
  for i = 13, #ARGV do redis.call('RPUSH', mkey, ARGV[i]) end
  local updated = tonumber(ARGV[12])
  local before = tonumber(redis.call('HGET', ckey, 'updated_at'))
  if before and before > updated then updated = before end
  redis.call('HSET', ckey, 'message_count', redis.call('LLEN', mkey), 'updated_at', string.format('%d', updated))
end
append(p, id, ARGV[9], 'state', ARGV[8])
redis.call('HSET', key, 'state', to)
if ARGV[5] ~= '' then redis.call('HSET', key, 'started_at', ARGV[5]) end
if ARGV[6] ~= '' then redis.call('HSET', key, 'finished_at', ARGV[6]) end
if ARGV[7] ~= '' then redis.call('HSET', key, 'result', ARGV[7]) end
if ARGV[10] ~= '' then redis.call('HSET', key, 'node', ARGV[10]) end
local num = redis.call('HGET', key, 'num')
redis.call('ZREM', p .. 'state:' .. state, id)
redis.call('ZADD', p .. 'state:' .. to, num, id)
return redis.call('HGETALL', key)
"#,
    )
});

/// ARGV: prefix, id, node. Answers the task's hash once taken for the node, or nothing when it
/// is not queued or another node took it.
pub(super) static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local key = ARGV[1] .. 'task:' .. ARGV[2]
if redis.call('HGET', key, 'state') ~= 'queued' or redis.call('HEXISTS', key, 'node') == 1 then
  return nil
end
redis.call('HSET', key, 'node', ARGV[3])
return redis.call('HGETALL', key)
"#,
    )
});

/// ARGV: prefix, id. Deletes a finished task with its log (in both Streams), its approvals
/// and its checkpoints.
pub(super) static DELETE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local p, id = ARGV[1], ARGV[2]
local key = p .. 'task:' .. id
local state = redis.call('HGET', key, 'state')
if not state then return redis.error_reply('NOTFOUND no such task') end
if not FINAL[state] then return redis.error_reply('WRONGSTATE ' .. state) end
local log = p .. 'log:' .. id
local entries = redis.call('XRANGE', log, '-', '+')
local ids = {}
for _, entry in ipairs(entries) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'pos' then ids[#ids + 1] = fields[i + 1] .. '-0' end
  end
  if #ids >= 1000 then
    redis.call('XDEL', p .. 'all', unpack(ids))
    ids = {}
  end
end
if #ids > 0 then redis.call('XDEL', p .. 'all', unpack(ids)) end
local idem = redis.call('HGET', key, 'idem')
if idem then redis.call('HDEL', p .. 'idem', idem) end
for _, approval in ipairs(redis.call('SMEMBERS', p .. 'task_approvals:' .. id)) do
  redis.call('DEL', p .. 'approval:' .. approval)
  redis.call('ZREM', p .. 'approvals', approval)
end
for _, checkpoint in ipairs(redis.call('HKEYS', p .. 'checkpoints:' .. id)) do
  redis.call('DEL', p .. 'cpfiles:' .. id .. ':' .. checkpoint)
end
redis.call('DEL', key, log, p .. 'task_approvals:' .. id, p .. 'checkpoints:' .. id)
redis.call('ZREM', p .. 'tasks', id)
redis.call('ZREM', p .. 'state:' .. state, id)
return 1
"#,
    )
});

/// ARGV: prefix, node, lease in microseconds, labels json, max concurrent. The lease ends by
/// Redis's clock, which every node shares.
pub(super) static RENEW_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local p, node = ARGV[1], ARGV[2]
local t = redis.call('TIME')
local until_us = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[3])
redis.call('ZADD', p .. 'leases', string.format('%d', until_us), node)
redis.call('HSET', p .. 'node:' .. node, 'labels', ARGV[4], 'max_concurrent', ARGV[5])
return 1
"#,
    )
});

/// Redis's clock, in microseconds: the one every node's lease is measured by.
pub(super) static CLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
return string.format('%d', tonumber(t[1]) * 1000000 + tonumber(t[2]))
"#,
    )
});

/// ARGV: prefix, id, name (or ''), then the key's fields. Refuses a name another key holds.
pub(super) static PUT_KEY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local p, id, name = ARGV[1], ARGV[2], ARGV[3]
if name ~= '' then
  local holder = redis.call('HGET', p .. 'keynames', name)
  if holder and holder ~= id and redis.call('EXISTS', p .. 'key:' .. holder) == 1 then
    return redis.error_reply('TAKEN ' .. holder)
  end
  redis.call('HSET', p .. 'keynames', name, id)
end
local key = p .. 'key:' .. id
redis.call('DEL', key)
for i = 4, #ARGV, 2 do redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
redis.call('SADD', p .. 'keys', id)
return 1
"#,
    )
});

/// ARGV: prefix, id. Deletes a key and every session made with it; answers 0 when there was
/// no such key.
pub(super) static DELETE_KEY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local p, id = ARGV[1], ARGV[2]
local key = p .. 'key:' .. id
if redis.call('SREM', p .. 'keys', id) == 0 then return 0 end
local name = redis.call('HGET', key, 'name')
if name and redis.call('HGET', p .. 'keynames', name) == id then
  redis.call('HDEL', p .. 'keynames', name)
end
redis.call('DEL', key)
for _, session in ipairs(redis.call('SMEMBERS', p .. 'sessions')) do
  if redis.call('HGET', p .. 'session:' .. session, 'holder') == id then
    redis.call('DEL', p .. 'session:' .. session)
    redis.call('SREM', p .. 'sessions', session)
  end
end
return 1
"#,
    )
});

/// ARGV: field, then pairs of key and value: sets the field of each hash that still exists.
pub(super) static SET_IF_EXISTS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local changed = 0
for i = 2, #ARGV, 2 do
  if redis.call('EXISTS', ARGV[i]) == 1 then
    redis.call('HSET', ARGV[i], ARGV[1], ARGV[i + 1])
    changed = changed + 1
  end
end
return changed
"#,
    )
});

/// ARGV: key, then its fields: replaces the fields of a hash that exists; answers 0 when it
/// does not.
pub(super) static UPDATE_IF_EXISTS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', ARGV[1]) == 0 then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', ARGV[1], ARGV[i], ARGV[i + 1]) end
return 1
"#,
    )
});
