"""boto 2 (python3-boto, boto.connect_euca) describes, runs and terminates; prints a JSON summary.
Env: EC2_URL, EC2_ACCESS_KEY, EC2_SECRET_KEY from eucarc, RUN_TAG; SIGV2=1 signs with Signature
Version 2 (HmacSHA256) as boto 2 did for Eucalyptus, instead of boto 2.49's default SigV4."""
import json, os, sys, time
from urllib.parse import urlparse
import boto
from boto.ec2.connection import EC2Connection
from boto.exception import EC2ResponseError

if os.environ.get("SIGV2") == "1":
    EC2Connection._required_auth_capability = lambda self: ["sign-v2"]
u = urlparse(os.environ["EC2_URL"])
tag = os.environ.get("RUN_TAG", "b2")

def connect(secret):
    return boto.connect_euca(host=u.hostname, port=u.port, path=u.path, is_secure=False,
                             aws_access_key_id=os.environ["EC2_ACCESS_KEY"], aws_secret_access_key=secret)

conn = connect(os.environ["EC2_SECRET_KEY"])
out = {"auth": type(conn._auth_handler).__name__}

def check(cond, what):
    if not cond:
        print(json.dumps({"failed": what, **out}, default=str))
        sys.exit(1)

try:
    connect("not-the-secret").get_all_zones()
    check(False, "a wrong secret is refused")
except EC2ResponseError as e:
    out["wrongSecret"] = [e.status, e.error_code]
    check(e.status in (401, 403) and e.error_code in ("AuthFailure", "SignatureDoesNotMatch"), "a wrong secret is AuthFailure/SignatureDoesNotMatch")

zones = conn.get_all_zones()
check(len(zones) >= 1, "at least one availability zone")
out["zones"] = [z.name for z in zones]
conn.create_key_pair(f"{tag}-key")
conn.create_security_group(f"{tag}-grp", "boto2 group")
img = conn.register_image(name=f"{tag}-image", image_location=f"{tag}-bucket/img.manifest.xml")
res = conn.run_instances(img, min_count=2, max_count=2, key_name=f"{tag}-key", security_groups=[f"{tag}-grp"], instance_type="m1.small")
ids = sorted(i.id for i in res.instances)
check(len(ids) == 2, "two instances launched")
out["instanceIds"] = ids
deadline = time.time() + 60
states = []
while time.time() < deadline:
    states = [i.state for r in conn.get_all_reservations(instance_ids=ids) for i in r.instances]
    if states == ["running"] * 2:
        break
    time.sleep(0.5)
check(states == ["running"] * 2, "both reach running")
filtered = conn.get_all_instances(filters={"instance-state-name": "running", "key-name": f"{tag}-key"})
check(sorted(i.id for r in filtered for i in r.instances) == ids, "filters find both")
terminated = conn.terminate_instances(instance_ids=ids)
check(sorted(i.id for i in terminated) == ids, "terminate answers for both")
deadline = time.time() + 60
while time.time() < deadline:
    states = [i.state for r in conn.get_all_reservations(instance_ids=ids) for i in r.instances]
    if states == ["terminated"] * 2:
        break
    time.sleep(0.5)
check(states == ["terminated"] * 2, "both reach terminated")
out["ok"] = True
print(json.dumps(out))
