"""py-consul (PyPI, written by nobody here) against the Consul simulator.

Usage: pyconsul_check.py HOST:PORT

Exercises sessions (create, info, renew, destroy), lock acquire/release,
advisory locks, lock-delay after invalidation but not after a release,
behavior=delete, check-and-set, a blocking query, recurse/keys listings and
a transaction. Prints one JSON line of what it observed; exits non-zero
(with the failed assertion) when the simulator departs from Consul's
documented behaviour.
"""

import base64
import json
import sys
import threading
import time

import consul
from consul.exceptions import ClientError, NotFound

host, port = sys.argv[1].rsplit(":", 1)
c = consul.Consul(host=host, port=int(port))
seen = {}

# Sessions: create with a TTL and a lock-delay, read them back.
s1 = c.session.create(name="one", ttl=10, lock_delay=2)
s2 = c.session.create(name="two", lock_delay=2)
_, info = c.session.info(s1)
assert info["ID"] == s1 and info["TTL"] == "10s", info
assert info["LockDelay"] == 2_000_000_000 and info["Behavior"] == "release", info
renewed = c.session.renew(s1)
assert renewed["ID"] == s1, renewed
seen["session_ttl"] = info["TTL"]

# Acquire: one holder at a time; LockIndex counts acquisitions.
assert c.kv.put("lab/lock", "a", acquire=s1) is True
assert c.kv.put("lab/lock", "b", acquire=s2) is False, "acquired a held lock"
_, e = c.kv.get("lab/lock")
assert e["Session"] == s1 and e["LockIndex"] == 1 and e["Value"] == b"a", e

# Locks are advisory: a plain write goes through and keeps the holder.
assert c.kv.put("lab/lock", "plain") is True
_, e = c.kv.get("lab/lock")
assert e["Session"] == s1 and e["Value"] == b"plain", e

# A plain release applies no lock-delay: the other session acquires at once.
assert c.kv.put("lab/lock", "x", release=s2) is False, "non-holder released"
assert c.kv.put("lab/lock", "a", release=s1) is True
assert c.kv.put("lab/lock", "b", acquire=s2) is True, "lock-delay after a plain release"
_, e = c.kv.get("lab/lock")
assert e["Session"] == s2 and e["LockIndex"] == 2, e

# Invalidation (destroy) releases the lock *with* the lock-delay.
assert c.session.destroy(s2) is True
_, e = c.kv.get("lab/lock")
assert "Session" not in e, e
assert c.kv.put("lab/lock", "a", acquire=s1) is False, "no lock-delay after invalidation"
t0 = time.monotonic()
while not c.kv.put("lab/lock", "a", acquire=s1):
    assert time.monotonic() - t0 < 30, "lock-delay never ended"
    time.sleep(0.2)
seen["lock_delay_waited_s"] = round(time.monotonic() - t0, 1)
try:
    c.session.renew(s2)
    raise AssertionError("renewed a destroyed session")
except NotFound:
    pass

# Behavior delete: the held key goes with the session.
s3 = c.session.create(behavior="delete", lock_delay=0)
assert c.kv.put("lab/ephemeral", "e", acquire=s3) is True
c.session.destroy(s3)
_, e = c.kv.get("lab/ephemeral")
assert e is None, e

# Check-and-set.
assert c.kv.put("lab/cas", "1", cas=0) is True
assert c.kv.put("lab/cas", "1", cas=0) is False, "cas=0 overwrote"
idx, e = c.kv.get("lab/cas")
m = e["ModifyIndex"]
assert c.kv.put("lab/cas", "2", cas=m) is True
assert c.kv.put("lab/cas", "3", cas=m) is False, "stale cas accepted"

# Blocking query: waits for the change and returns it with a higher index.
idx, e = c.kv.get("lab/cas")
threading.Timer(0.5, lambda: c.kv.put("lab/cas", "4")).start()
idx2, e2 = c.kv.get("lab/cas", index=idx, wait="20s")
assert e2["Value"] == b"4" and int(idx2) > int(idx), (idx, idx2, e2)
# ... and returns unchanged after `wait` when nothing happens.
t0 = time.monotonic()
idx3, e3 = c.kv.get("lab/cas", index=idx2, wait="1s")
waited = time.monotonic() - t0
assert idx3 == idx2 and e3["Value"] == b"4", (idx2, idx3)
assert waited >= 0.9, f"did not block ({waited:.2f}s)"
seen["blocking_index"] = [int(idx), int(idx2)]

# Listings.
_, items = c.kv.get("lab/", recurse=True)
keys = sorted(i["Key"] for i in items)
assert keys == ["lab/cas", "lab/lock"], keys
_, ks = c.kv.get("lab/", keys=True)
assert sorted(ks) == keys, ks
idx404, none = c.kv.get("lab/missing")
assert none is None and int(idx404) >= 1

# Transactions: all or nothing, 409 with the failed operation.
ok = c.txn.put([
    {"KV": {"Verb": "check-session", "Key": "lab/lock", "Session": s1}},
    {"KV": {"Verb": "set", "Key": "lab/txn", "Value": base64.b64encode(b"t").decode()}},
])
assert ok["Errors"] is None and len(ok["Results"]) == 2, ok
try:
    c.txn.put([
        {"KV": {"Verb": "set", "Key": "lab/txn2", "Value": ""}},
        {"KV": {"Verb": "check-session", "Key": "lab/lock", "Session": s2}},
    ])
    raise AssertionError("txn with a failed check applied")
except ClientError as err:
    assert "409" in str(err), err
_, e = c.kv.get("lab/txn2")
assert e is None, "a rolled-back txn wrote"

c.session.destroy(s1)
print(json.dumps({"ok": True, **seen}))
