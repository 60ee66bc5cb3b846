"""Microsoft's own SDKs against the Cosmos DB simulator.

azure-mgmt-cosmosdb (ARM) and azure-cosmos (data plane), from PyPI, written
by nobody here: read the account, refuse invalid failover priorities, change
them and poll the long-running operation to completion, then check that the
data plane's locations agree with ARM's. Exits non-zero with a message on
the first disagreement. Run by tests/lab/tests/cosmossim_sdk.rs.

Environment: SIM_ARM, SIM_DOCS, SIM_KEY, SIM_ACCOUNT, SIM_CA, SIM_TENANT,
SIM_CLIENT_ID, SIM_CLIENT_SECRET.
"""

import base64
import os
import sys
import time

import warnings

import requests
import urllib3
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.cosmos import CosmosClient, documents
from azure.cosmos.exceptions import CosmosHttpResponseError
from azure.mgmt.cosmosdb import CosmosDBManagementClient
from azure.mgmt.cosmosdb.models import FailoverPolicies, FailoverPolicy

env = os.environ
arm, docs, key, account, ca = (
    env["SIM_ARM"],
    env["SIM_DOCS"],
    env["SIM_KEY"],
    env["SIM_ACCOUNT"],
    env["SIM_CA"],
)
# Every connection verifies the simulator's certificate against its CA: an
# unverified request is a failure, not a warning.
warnings.simplefilter("error", urllib3.exceptions.InsecureRequestWarning)
parts = account.strip("/").split("/")
sub, rg, name = parts[1], parts[3], parts[7]


def check(cond, what):
    if not cond:
        print(f"FIDELITY: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


# Raw ARM rules first: api-version and a bearer token are required.
r = requests.get(f"{arm}{account}", verify=ca)
check(
    r.status_code == 400 and r.json()["error"]["code"] == "MissingApiVersionParameter",
    f"no api-version gets 400 MissingApiVersionParameter (got {r.status_code})",
)
r = requests.get(f"{arm}{account}?api-version=2024-11-15", verify=ca)
check(r.status_code == 401, f"no bearer token gets 401 (got {r.status_code})")

# A client-credentials token from the simulator's token endpoint.
r = requests.post(
    f"{arm}/{env['SIM_TENANT']}/oauth2/v2.0/token",
    data={
        "grant_type": "client_credentials",
        "client_id": env["SIM_CLIENT_ID"],
        "client_secret": env["SIM_CLIENT_SECRET"],
        "scope": "https://management.azure.com/.default",
    },
    verify=ca,
)
check(r.status_code == 200, f"token endpoint issues a token (got {r.status_code})")
token = r.json()["access_token"]


class StaticToken:
    def get_token(self, *scopes, **kwargs):
        return AccessToken(token, int(time.time()) + 3000)


mgmt = CosmosDBManagementClient(
    StaticToken(), sub, base_url=arm, connection_verify=ca, polling_interval=1
)
acct = mgmt.database_accounts.get(rg, name)
regions = [l.location_name for l in sorted(acct.locations, key=lambda l: l.failover_priority)]
check(len(regions) >= 2, f"account lists its locations: {regions}")
check(
    acct.write_locations[0].location_name == regions[0],
    f"write location is failover priority 0 ({regions[0]})",
)
check(acct.provisioning_state == "Succeeded", "account provisioningState Succeeded")
check(
    acct.consistency_policy.default_consistency_level is not None,
    f"consistency policy {acct.consistency_policy.default_consistency_level}",
)


def policies(pairs):
    return FailoverPolicies(
        failover_policies=[FailoverPolicy(location_name=n, failover_priority=p) for n, p in pairs]
    )


invalid = [
    ("a region left out", [(regions[1], 0)]),
    ("a priority twice", [(r, 0) for r in regions]),
    ("a priority out of range", [(r, i + 1) for i, r in enumerate(regions)]),
    ("an unknown region", [("Lab Mars", 0)] + [(r, i + 1) for i, r in enumerate(regions[1:])]),
]
for what, pairs in invalid:
    try:
        mgmt.database_accounts.begin_failover_priority_change(rg, name, policies(pairs)).result()
        check(False, f"{what} is refused")
    except HttpResponseError as e:
        check(e.status_code == 400, f"{what} is refused with 400 ({e.status_code})")

# Move writes to the second region and poll the operation to completion.
new_order = [regions[1], regions[0]] + regions[2:]
poller = mgmt.database_accounts.begin_failover_priority_change(
    rg, name, policies([(r, i) for i, r in enumerate(new_order)])
)
poller.result(timeout=120)
check(poller.status() == "Succeeded", f"operation polled to {poller.status()}")
acct = mgmt.database_accounts.get(rg, name)
check(
    [l.location_name for l in acct.write_locations] == [regions[1]],
    f"ARM write location is now {regions[1]}",
)
check(
    {p.location_name: p.failover_priority for p in acct.failover_policies}
    == {r: i for i, r in enumerate(new_order)},
    "ARM failover policies persisted",
)

# The data plane: global endpoint and every regional endpoint agree.
def tls():
    # azure-cosmos skips verification for 127.0.0.1 (the emulator) unless
    # given an SSL configuration with a CA.
    cfg = documents.SSLConfiguration()
    cfg.SSLCaCerts = ca
    return cfg


client = CosmosClient(docs, credential=key, connection_verify=ca, ssl_config=tls())
conn = client.client_connection
views = {"global": conn.GetDatabaseAccount(docs)}
for loc in acct.read_locations:
    views[loc.location_name] = conn.GetDatabaseAccount(loc.document_endpoint)
for where, view in views.items():
    writable = [l["name"] for l in view._WritableLocations]
    readable = [l["name"] for l in view._ReadableLocations]
    check(writable == [regions[1]], f"data plane at {where}: writable {writable}")
    check(readable == new_order, f"data plane at {where}: readable {readable}")

# A wrong key is refused by the data plane.
wrong = base64.b64encode(b"not the key" * 6).decode()
try:
    CosmosClient(docs, credential=wrong, connection_verify=ca, ssl_config=tls()).client_connection.GetDatabaseAccount(docs)
    check(False, "a wrong master key is refused")
except CosmosHttpResponseError as e:
    check(e.status_code == 401, f"a wrong master key is refused with 401 ({e.status_code})")

# Back to the original order.
mgmt.database_accounts.begin_failover_priority_change(
    rg, name, policies([(r, i) for i, r in enumerate(regions)])
).result(timeout=120)
acct = mgmt.database_accounts.get(rg, name)
check(acct.write_locations[0].location_name == regions[0], f"and back to {regions[0]}")
print("cosmos_check: all passed")
