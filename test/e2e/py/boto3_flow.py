"""boto3 (SigV4) drives the whole instance life cycle; prints a JSON summary. Env: EC2_URL, AWS_* from eucarc, RUN_TAG."""
import json, os, sys, time
import boto3

tag = os.environ.get("RUN_TAG", "b3")
ec2 = boto3.client("ec2", endpoint_url=os.environ["EC2_URL"], region_name=os.environ["AWS_DEFAULT_REGION"],
                   aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"], aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"])
out = {}

def check(cond, what):
    if not cond:
        print(json.dumps({"failed": what, **out}, default=str))
        sys.exit(1)

kp = ec2.create_key_pair(KeyName=f"{tag}-key")
check(kp["KeyMaterial"].startswith("-----BEGIN"), "key pair has PEM private key")
out["keyFingerprint"] = kp["KeyFingerprint"]
g = ec2.create_security_group(GroupName=f"{tag}-web", Description="web servers")
ec2.authorize_security_group_ingress(GroupName=f"{tag}-web", IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
sg = ec2.describe_security_groups(GroupIds=[g["GroupId"]])["SecurityGroups"][0]
check(any(p.get("FromPort") == 22 for p in sg["IpPermissions"]), "ingress rule for port 22 is listed")
img = ec2.register_image(ImageLocation=f"{tag}-bucket/test.img.manifest.xml", Name=f"{tag}-image")["ImageId"]
check(ec2.describe_images(ImageIds=[img])["Images"][0]["ImageId"] == img, "registered image is described")
res = ec2.run_instances(ImageId=img, MinCount=3, MaxCount=3, InstanceType="m1.small", KeyName=f"{tag}-key", SecurityGroups=[f"{tag}-web"])
ids = sorted(i["InstanceId"] for i in res["Instances"])
check(len(ids) == 3, "three instances launched")
out["instanceIds"] = ids

deadline = time.time() + 60
running = []
while time.time() < deadline:
    r = ec2.describe_instances(Filters=[{"Name": "instance-id", "Values": ids}, {"Name": "instance-state-name", "Values": ["running"]}])
    running = sorted(i["InstanceId"] for rv in r["Reservations"] for i in rv["Instances"])
    if running == ids:
        break
    time.sleep(0.5)
check(running == ids, "all three reach running")

by_key = ec2.describe_instances(Filters=[{"Name": "key-name", "Values": [f"{tag}-key"]}, {"Name": "instance-type", "Values": ["m1.small"]}])
check(sorted(i["InstanceId"] for rv in by_key["Reservations"] for i in rv["Instances"]) == ids, "key-name + instance-type filters find the three")
none = ec2.describe_instances(Filters=[{"Name": "image-id", "Values": ["emi-00000000"]}])
check(none["Reservations"] == [], "an image-id filter matching nothing returns no reservations")

ec2.create_tags(Resources=[ids[0]], Tags=[{"Key": "role", "Value": "db"}])
tagged = ec2.describe_instances(Filters=[{"Name": "tag:role", "Values": ["db"]}])
check([i["InstanceId"] for rv in tagged["Reservations"] for i in rv["Instances"]] == [ids[0]], "tag:role filter finds the tagged instance only")
tags = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [ids[0]]}])["Tags"]
check(any(t["Key"] == "role" and t["Value"] == "db" for t in tags), "DescribeTags lists the tag")

co = ec2.get_console_output(InstanceId=ids[0])
check(co["InstanceId"] == ids[0], "console output names the instance")
out["consoleOutput"] = co.get("Output", "")

term = ec2.terminate_instances(InstanceIds=ids)
check(sorted(t["InstanceId"] for t in term["TerminatingInstances"]) == ids, "terminate answers for the three")
deadline = time.time() + 60
states = []
while time.time() < deadline:
    r = ec2.describe_instances(InstanceIds=ids)
    states = [i["State"]["Name"] for rv in r["Reservations"] for i in rv["Instances"]]
    if states and all(s == "terminated" for s in states):
        break
    time.sleep(0.5)
check(states == ["terminated"] * 3, "all three reach terminated")
out["ok"] = True
print(json.dumps(out, default=str))
