"""Second, independent client check of the MongoDB simulator (pymongo).

Run by tests/lab/tests/mongosim_pymongo.rs:
  python3 pymongo_check.py URI FROZEN
Phase 1: discover the replica set, write with w:"majority", read back,
print one JSON line. Hand-over: freeze the members in FROZEN (host:port,
comma-separated) with replSetFreeze, write with w:1, step the primary down
with a catch-up period, wait for the new primary (the one unfrozen electable
member), count the w:1 writes there, unfreeze, print one JSON line and wait
for a line on stdin (the Rust side cuts the new primary's region meanwhile).
Phase 2: keep writing with w:1 until a new primary accepts, print the final
JSON line.
"""
import json
import sys
import time

from pymongo import MongoClient, WriteConcern
from pymongo.errors import OperationFailure, PyMongoError

uri = sys.argv[1]
frozen = [h for h in sys.argv[2].split(",") if h]
client = MongoClient(uri, serverSelectionTimeoutMS=30000, heartbeatFrequencyMS=500)
client.admin.command("ping")
deadline = time.time() + 30
while client.primary is None and time.time() < deadline:
    time.sleep(0.05)
db = client.get_database("py")
majority = db.get_collection("docs", write_concern=WriteConcern(w="majority", wtimeout=20000))
for i in range(10):
    majority.insert_one({"_id": i, "phase": 1})
count = db.docs.count_documents({"phase": 1})
status = client.admin.command("replSetGetStatus")
first = client.primary
print(json.dumps({
    "phase": 1,
    "primary": "%s:%d" % first,
    "hosts": sorted("%s:%d" % h for h in client.nodes),
    "set": status["set"],
    "count": count,
}), flush=True)



def direct(host):
    return MongoClient(host, directConnection=True, serverSelectionTimeoutMS=10000)


def code_of(cmd, host):
    try:
        direct(host).admin.command(cmd)
        return 0
    except OperationFailure as e:
        return e.code


old = "%s:%d" % first
freeze_on_primary = code_of({"replSetFreeze": 60}, old)
for h in frozen:
    direct(h).admin.command({"replSetFreeze": 120})
step_up_frozen = code_of({"replSetStepUp": 1}, frozen[0])
w1 = db.get_collection("docs", write_concern=WriteConcern(w=1))
for i in range(5):
    w1.insert_one({"_id": 200 + i, "phase": "handover"})
try:
    direct(old).admin.command({"replSetStepDown": 60, "secondaryCatchUpPeriodSecs": 10})
except PyMongoError:
    pass  # the step-down may close the connection
deadline = time.time() + 30
while time.time() < deadline and client.primary in (None, first):
    time.sleep(0.05)
new = client.primary
handed = db.docs.count_documents({"phase": "handover"}) if new else None
unfrozen = [direct(h).admin.command({"replSetFreeze": 0}).get("info") for h in frozen]
print(json.dumps({
    "phase": "handover",
    "freeze_on_primary": freeze_on_primary,
    "step_up_frozen": step_up_frozen,
    "primary": "%s:%d" % new if new else None,
    "handover_count": handed,
    "unfrozen": unfrozen,
}), flush=True)

sys.stdin.readline()
deadline = time.time() + 60
written = False
while time.time() < deadline and not written:
    try:
        db.docs.insert_one({"_id": 100, "phase": 2})
        written = True
    except PyMongoError:
        time.sleep(0.1)
second = client.primary
print(json.dumps({
    "phase": 2,
    "written": written,
    "primary": "%s:%d" % second if second else None,
    "count": db.docs.count_documents({}),
}), flush=True)
