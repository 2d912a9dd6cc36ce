"""boto3 (and botocore's own SigV4 signer) against `nle kms serve`. Driven by test/real-clients-kms.test.ts.

Reads a JSON job on stdin: {endpoint, region, admin: {accessKeyId, secretAccessKey}, host: {...},
recipient: {keyId, ciphertext (base64), document (base64), foreignDocument (base64)}}. Prints one
JSON object with what each step saw. Fake, local credentials only: nothing here reaches AWS.
"""
import base64
import json
import sys
import urllib.error
import urllib.request

import boto3
import botocore
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

job = json.load(sys.stdin)
out = {"boto3": boto3.__version__, "botocore": botocore.__version__}


def client(who, region=None):
    ident = job[who]
    return boto3.client(
        "kms",
        endpoint_url=job["endpoint"],
        region_name=region or job["region"],
        aws_access_key_id=ident["accessKeyId"],
        aws_secret_access_key=ident["secretAccessKey"],
        config=Config(retries={"max_attempts": 1}),
    )


def error(fn):
    try:
        fn()
    except ClientError as e:
        return {"code": e.response["Error"]["Code"], "message": e.response["Error"].get("Message", ""), "status": e.response["ResponseMetadata"]["HTTPStatusCode"]}
    return None


admin = client("admin")

# ListKeys through the paginator, two keys a page.
created = [admin.create_key(Description=f"boto3 {i}", Tags=[{"TagKey": "n", "TagValue": str(i)}])["KeyMetadata"]["KeyId"] for i in range(3)]
pages = list(admin.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": 2}))
out["listKeys"] = {"pages": len(pages), "keyIds": [k["KeyId"] for p in pages for k in p["Keys"]], "created": created}

a, b, c = created
# GenerateDataKeyWithoutPlaintext, then ReEncrypt to another key; Decrypt shows it is the same data key.
gen = admin.generate_data_key_without_plaintext(KeyId=a, KeySpec="AES_256", EncryptionContext={"purpose": "test"})
out["withoutPlaintext"] = {"hasPlaintext": "Plaintext" in gen, "keyId": gen["KeyId"]}
first = admin.decrypt(CiphertextBlob=gen["CiphertextBlob"], EncryptionContext={"purpose": "test"})["Plaintext"]
moved = admin.re_encrypt(CiphertextBlob=gen["CiphertextBlob"], SourceEncryptionContext={"purpose": "test"}, DestinationKeyId=b)
second = admin.decrypt(CiphertextBlob=moved["CiphertextBlob"])
out["reEncrypt"] = {"sourceKeyId": moved["SourceKeyId"], "keyId": moved["KeyId"], "decryptedBy": second["KeyId"], "same": first == second["Plaintext"], "bytes": len(first)}

# Tags.
admin.tag_resource(KeyId=c, Tags=[{"TagKey": "team", "TagValue": "ml"}, {"TagKey": "n", "TagValue": "two"}])
admin.untag_resource(KeyId=c, TagKeys=["team"])
out["tags"] = [t for p in admin.get_paginator("list_resource_tags").paginate(KeyId=c) for t in p["Tags"]] if admin.can_paginate("list_resource_tags") else admin.list_resource_tags(KeyId=c)["Tags"]

# Disable / enable, schedule / cancel deletion.
admin.disable_key(KeyId=c)
disabled = error(lambda: admin.encrypt(KeyId=c, Plaintext=b"x"))
admin.enable_key(KeyId=c)
admin.encrypt(KeyId=c, Plaintext=b"x")
scheduled = admin.schedule_key_deletion(KeyId=c, PendingWindowInDays=7)
pending = error(lambda: admin.encrypt(KeyId=c, Plaintext=b"x"))
described = admin.describe_key(KeyId=c)["KeyMetadata"]
admin.cancel_key_deletion(KeyId=c)
out["states"] = {"disabled": disabled, "scheduled": scheduled["KeyState"], "pending": pending, "described": described["KeyState"], "hasDeletionDate": "DeletionDate" in described, "afterCancel": admin.describe_key(KeyId=c)["KeyMetadata"]["KeyState"]}

# Aliases.
admin.create_alias(AliasName="alias/boto3", TargetKeyId=a)
admin.update_alias(AliasName="alias/boto3", TargetKeyId=b)
target = [x for p in admin.get_paginator("list_aliases").paginate() for x in p["Aliases"] if x["AliasName"] == "alias/boto3"][0]["TargetKeyId"]
admin.delete_alias(AliasName="alias/boto3")
out["aliases"] = {"after update": target, "after delete": error(lambda: admin.describe_key(KeyId="alias/boto3"))}
out["keyPolicies"] = admin.list_key_policies(KeyId=a)["PolicyNames"]

# Refused clearly: an asymmetric key, a request signed for another region.
out["asymmetric"] = error(lambda: admin.create_key(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT"))
out["otherRegion"] = error(lambda: client("admin", "eu-west-1").list_keys())

# Decrypt with a Recipient: with boto3 when this botocore knows the parameter, else a raw request
# signed by botocore's SigV4Auth.
r = job["recipient"]
host = client("host")
knows = "Recipient" in host.meta.service_model.operation_model("Decrypt").input_shape.members


def raw(operation, body, who="host"):
    ident = job[who]
    data = json.dumps(body).encode()
    request = AWSRequest(method="POST", url=job["endpoint"] + "/", data=data, headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"TrentService.{operation}"})
    SigV4Auth(Credentials(ident["accessKeyId"], ident["secretAccessKey"]), "kms", job["region"]).add_auth(request)
    prepared = request.prepare()
    try:
        with urllib.request.urlopen(urllib.request.Request(prepared.url, data=data, headers=dict(prepared.headers), method="POST")) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def decrypt_for(document):
    recipient = {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "AttestationDocument": document}
    if knows:
        try:
            res = host.decrypt(CiphertextBlob=base64.b64decode(r["ciphertext"]), Recipient={**recipient, "AttestationDocument": base64.b64decode(document)})
            return 200, {k: (base64.b64encode(v).decode() if isinstance(v, bytes) else v) for k, v in res.items() if k != "ResponseMetadata"}
        except ClientError as e:
            return e.response["ResponseMetadata"]["HTTPStatusCode"], {"__type": e.response["Error"]["Code"], "message": e.response["Error"].get("Message", "")}
    return raw("Decrypt", {"CiphertextBlob": r["ciphertext"], "Recipient": recipient})


status, body = decrypt_for(r["document"])
out["recipient"] = {"via": "boto3" if knows else "SigV4Auth", "status": status, "hasPlaintext": "Plaintext" in body, "ciphertextForRecipient": body.get("CiphertextForRecipient")}
status, body = decrypt_for(r["foreignDocument"])
out["refusedRecipient"] = {"status": status, "type": body.get("__type"), "message": body.get("message")}
# ReEncrypt carries no Recipient: a policy that releases the key only to an attested enclave refuses it.
status, body = raw("ReEncrypt", {"CiphertextBlob": r["ciphertext"], "DestinationKeyId": a})
out["reEncryptAttestedKey"] = {"status": status, "type": body.get("__type")}

print(json.dumps(out))
