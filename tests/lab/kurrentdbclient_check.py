"""An independent client (kurrentdbclient from PyPI, nobody here wrote it)
against the EventStoreDB simulator.

Usage: kurrentdbclient_check.py HOST:PORT,HOST:PORT,...

Discovers the leader through gossip, appends 10 events on the leader, reads
them from a follower, asks the leader to resign over the HTTP admin API
(after raising one follower's priority), waits for the re-election, appends
5 more and reads all 15 back from the new leader and a follower, then
appends 5 in one call (a list of events: the client sends it as one
Streams.BatchAppend request) at the expected position 14, is refused a second
batch at a wrong expected position, and reads all 20 back. Prints one
JSON line per phase; exits non-zero on any mismatch.
"""

import json
import sys
import time
import urllib.request
import uuid

from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.exceptions import WrongCurrentVersionError

SEEDS = sys.argv[1]
STREAM = "py-check-" + uuid.uuid4().hex


def client(preference):
    uri = f"kurrentdb://{SEEDS}?Tls=false&NodePreference={preference}&MaxDiscoverAttempts=50&DiscoveryInterval=100&GossipTimeout=2"
    return KurrentDBClient(uri=uri)


def leader_of(c):
    members = c.read_gossip()
    leaders = [m for m in members if m.state == "NODE_STATE_LEADER"]
    return members, (f"{leaders[0].address}:{leaders[0].port}" if len(leaders) == 1 else None)


def post(endpoint, path):
    req = urllib.request.Request(f"http://{endpoint}{path}", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status


def read_until(c, n, deadline=30.0):
    end = time.monotonic() + deadline
    while True:
        try:
            events = c.get_stream(STREAM)
            if len(events) >= n:
                return events
        except Exception:  # noqa: BLE001 - a follower may not have the stream yet
            if time.monotonic() > end:
                raise
        if time.monotonic() > end:
            return c.get_stream(STREAM)
        time.sleep(0.1)


def fail(msg):
    print(json.dumps({"ok": False, "error": msg}), flush=True)
    sys.exit(1)


leader_client = client("leader")
members, leader = leader_of(leader_client)
if leader is None:
    fail(f"no single leader in gossip: {members}")
ids = []
for i in range(10):
    e = NewEvent(type="checked", data=json.dumps({"i": i}).encode())
    leader_client.append_to_stream(STREAM, events=e, current_version=StreamState.ANY)
    ids.append(str(e.id))
follower_client = client("follower")
got = [str(e.id) for e in read_until(follower_client, 10)]
if got != ids:
    fail(f"follower read {got}, appended {ids}")
followers = [f"{m.address}:{m.port}" for m in members if m.state == "NODE_STATE_FOLLOWER"]
print(json.dumps({"phase": 1, "leader": leader, "members": len(members),
                  "followers": followers, "count": len(got)}), flush=True)

# Resign: the follower with the higher priority must win the re-election.
preferred = followers[0]
post(preferred, "/admin/node/priority/20")
post(leader, "/admin/node/resign")
end = time.monotonic() + 30
new_leader = None
while time.monotonic() < end:
    try:
        _, new_leader = leader_of(client("follower"))
    except Exception:  # noqa: BLE001 - elections in progress
        new_leader = None
    if new_leader is not None and new_leader != leader:
        break
    time.sleep(0.1)
if new_leader is None or new_leader == leader:
    fail(f"no re-election after resign (leader {leader}, now {new_leader})")

leader_client = client("leader")
for i in range(10, 15):
    e = NewEvent(type="checked", data=json.dumps({"i": i}).encode())
    leader_client.append_to_stream(STREAM, events=e, current_version=StreamState.ANY)
    ids.append(str(e.id))
on_leader = [str(e.id) for e in read_until(leader_client, 15)]
on_follower = [str(e.id) for e in read_until(client("follower"), 15)]
if on_leader != ids or on_follower != ids:
    fail(f"lost events: appended {ids}, leader {on_leader}, follower {on_follower}")
print(json.dumps({"phase": 2, "old_leader": leader, "leader": new_leader,
                  "preferred": preferred, "stream": STREAM, "count": len(on_leader)}), flush=True)

# A list of events goes through Streams.BatchAppend (one correlation id,
# is_final, a deadline, the expected position).
batch = [NewEvent(type="checked", data=json.dumps({"i": i}).encode()) for i in range(15, 20)]
commit = leader_client.append_to_stream(STREAM, events=batch, current_version=14)
ids.extend(str(e.id) for e in batch)
try:
    leader_client.append_to_stream(
        STREAM, events=[NewEvent(type="checked", data=b"{}")], current_version=3)
    fail("a batch at a wrong expected position was written")
except WrongCurrentVersionError as e:
    wrong = str(e)
on_leader = [str(e.id) for e in read_until(leader_client, 20)]
on_follower = [str(e.id) for e in read_until(client("follower"), 20)]
if on_leader != ids or on_follower != ids:
    fail(f"batch lost events: appended {ids}, leader {on_leader}, follower {on_follower}")
print(json.dumps({"phase": 3, "commit_position": commit, "count": len(on_leader),
                  "wrong_version": wrong}), flush=True)
