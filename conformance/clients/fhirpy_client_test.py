#!/usr/bin/env python3
"""Drive a running Musubi server with the real Python FHIR client, fhirpy.

Usage: fhirpy_client_test.py BASE_URL   (e.g. http://127.0.0.1:8080/fhir)

What a third-party client sees is what matters to the municipalities and clinics that will
connect: this checks the interactions they use, through the client's own code paths, with
Japanese names written the way Japanese systems write them (kanji and kana representations,
the ideographic space U+3000 between family and given name).

On success the last line of output is `PATIENT_ID=<id>`: the id of a Patient left in the store,
which conformance/run-tests.sh reads back after restarting the server.
Exits 1 with a message on the first failure.
"""

import os
import sys
import traceback
import urllib.error
import urllib.request
import uuid

from fhirpy import SyncFHIRClient
from oauthlib.oauth2 import BackendApplicationClient
from requests_oauthlib import OAuth2Session
from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound

REPRESENTATION = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"
KANJI_NAME = "山田\u3000太郎"
KANA_NAME = "ヤマダ\u3000タロウ"


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def step(title):
    print(f"--- {title}", flush=True)


def ids(resources):
    return sorted(r.id for r in resources)


def patient_body(identifier_system, identifier_value):
    return {
        "identifier": [{"system": identifier_system, "value": identifier_value}],
        "name": [
            {
                "extension": [{"url": REPRESENTATION, "valueCode": "IDE"}],
                "use": "official",
                "text": KANJI_NAME,
                "family": "山田",
                "given": ["太郎"],
            },
            {
                "extension": [{"url": REPRESENTATION, "valueCode": "SYL"}],
                "use": "official",
                "text": KANA_NAME,
                "family": "ヤマダ",
                "given": ["タロウ"],
            },
        ],
        "gender": "male",
        "birthDate": "2020-02-29",
    }


def fetch_token(base):
    """A system token by client_credentials, the way a clinic's EMR gets one (requests-oauthlib).

    The client defaults to the demo configuration's clinic (MUSUBI_CLIENT_ID / MUSUBI_CLIENT_SECRET
    override it)."""
    client_id = os.environ.get("MUSUBI_CLIENT_ID", "demo-clinic")
    secret = os.environ.get("MUSUBI_CLIENT_SECRET", "demo-clinic-secret")
    root = base.rsplit("/fhir", 1)[0]
    if root.startswith(("http://127.0.0.1", "http://localhost")):
        # oauthlib insists on HTTPS; this run talks to a server on loopback only (the HTTPS
        # path is covered by oauth_e2e_test.py).
        os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"
    session = OAuth2Session(client=BackendApplicationClient(client_id=client_id))
    token = session.fetch_token(token_url=f"{root}/oauth/token", client_id=client_id, client_secret=secret)
    return token["access_token"]


def run(base):
    step("token")
    authorization = f"Bearer {fetch_token(base)}"
    client = SyncFHIRClient(base, authorization=authorization)
    # Each run uses its own identifier so that it can run against a server that keeps data.
    run_tag = uuid.uuid4().hex[:12]
    identifier_system = "urn:oid:1.2.392.100495.20.3.51.11310000001"
    identifier_value = f"musubi-{run_tag}"

    step("metadata")
    capability = client.execute("metadata", method="get")
    check(capability["resourceType"] == "CapabilityStatement", f"metadata is a {capability['resourceType']}")
    check(capability.get("fhirVersion", "").startswith("4.0"), f"fhirVersion {capability.get('fhirVersion')}")
    served = {r["type"] for r in capability["rest"][0]["resource"]}
    for needed in ("Patient", "Immunization"):
        check(needed in served, f"{needed} is not in the CapabilityStatement")

    step("create a Patient with a Japanese name")
    patient = client.resource("Patient", **patient_body(identifier_system, identifier_value))
    patient.save()
    check(bool(patient.id), "the created Patient has no id")
    check(patient["meta"]["versionId"] == "1", f"versionId after create: {patient['meta'].get('versionId')}")
    patient_id = patient.id
    print(f"created Patient/{patient_id}")

    step("read it back: the name must be unchanged byte for byte")
    read = client.get("Patient", patient_id)
    for i, expected in enumerate((KANJI_NAME, KANA_NAME)):
        got = read["name"][i]["text"]
        check(
            got.encode("utf-8") == expected.encode("utf-8"),
            f"name[{i}].text is {got!r} ({got.encode('utf-8').hex()}), expected {expected!r}",
        )
    check(read["name"][1]["family"] == "ヤマダ", f"kana family {read['name'][1]['family']!r}")
    check(read["birthDate"] == "2020-02-29", f"birthDate {read['birthDate']!r}")
    # The raw bytes too, so that neither escaping (\u5c71) nor normalisation hides behind json.loads.
    status, raw = raw_get(client, f"Patient/{patient_id}")
    check(status == 200, f"GET Patient/{patient_id} answered {status}")
    check(KANJI_NAME.encode("utf-8") in raw, "the response body does not hold the name as UTF-8 bytes")

    step("search by family name, by full name without the space, by hiragana, by birthdate")
    patients = client.resources("Patient")
    # Other data may be on the server: a search must find this patient, and a search that should
    # not match must leave it out.
    found = ids(patients.search(family="山田").fetch_all())
    check(patient_id in found, f"family=山田 did not find Patient/{patient_id} ({len(found)} found)")
    found = ids(patients.search(family="山本").fetch_all())
    check(patient_id not in found, "family=山本 found 山田 太郎")
    found = ids(patients.search(name="山田太郎").fetch_all())
    check(patient_id in found, f"name=山田太郎 (no space) did not find Patient/{patient_id} ({len(found)} found)")
    found = ids(patients.search(name="やまだ").fetch_all())
    check(patient_id in found, f"name=やまだ (hiragana for the katakana ヤマダ) did not find Patient/{patient_id}")
    found = ids(patients.search(name="やまもと").fetch_all())
    check(patient_id not in found, "name=やまもと found ヤマダ タロウ")
    found = ids(patients.search(birthdate__ge="2019-01-01").fetch_all())
    check(patient_id in found, f"birthdate=ge2019-01-01 did not find Patient/{patient_id} (born 2020-02-29)")
    found = ids(patients.search(birthdate__lt="2019-01-01").fetch_all())
    check(patient_id not in found, "birthdate=lt2019-01-01 found a patient born 2020-02-29")

    step("update")
    patient["telecom"] = [{"system": "phone", "value": "03-1234-5678", "use": "home"}]
    patient.save()
    check(patient["meta"]["versionId"] == "2", f"versionId after update: {patient['meta'].get('versionId')}")
    read = client.get("Patient", patient_id)
    check(read["telecom"][0]["value"] == "03-1234-5678", f"telecom after update: {read.get('telecom')}")
    check(read["name"][0]["text"] == KANJI_NAME, "the name changed on update")

    step("Immunization referencing the patient; search by patient and date, with _include")
    immunization = client.resource(
        "Immunization",
        status="completed",
        vaccineCode={
            "coding": [{"system": "urn:oid:1.2.392.200119.4.403.1", "code": "MR", "display": "麻しん風しん混合ワクチン"}],
            "text": "MR（麻しん風しん混合）",
        },
        patient=patient.to_reference(),
        occurrenceDateTime="2024-04-01T10:30:00+09:00",
        primarySource=True,
    )
    immunization.save()
    check(bool(immunization.id), "the created Immunization has no id")
    immunizations = client.resources("Immunization")
    found = immunizations.search(patient=f"Patient/{patient_id}", date__ge="2024-01-01").fetch_all()
    check(ids(found) == [immunization.id], f"Immunization?patient&date=ge2024-01-01 found {ids(found)}")
    found = immunizations.search(patient=f"Patient/{patient_id}", date__lt="2024-01-01").fetch_all()
    check(found == [], f"Immunization?patient&date=lt2024-01-01 found {ids(found)}")
    bundle = (
        immunizations.search(patient=f"Patient/{patient_id}", date__ge="2024-01-01")
        .include("Immunization", "patient")
        .fetch_raw()
    )
    entries = bundle.get("entry", [])
    modes = sorted((e["resource"]["resourceType"], e.get("search", {}).get("mode")) for e in entries)
    check(
        modes == [("Immunization", "match"), ("Patient", "include")],
        f"_include=Immunization:patient gave {modes}",
    )
    included = next(e["resource"] for e in entries if e["resource"]["resourceType"] == "Patient")
    check(included["id"] == patient_id, f"included Patient/{included['id']}, expected {patient_id}")

    step("conditional create (If-None-Exist) with the identifier")
    # fhirpy's own get_or_create sends the criteria as query parameters, which is not R4's
    # conditional create; the standard header goes through a client configured to send it.
    criteria = f"identifier={identifier_system}|{identifier_value}"
    conditional = SyncFHIRClient(base, authorization=authorization, extra_headers={"If-None-Exist": criteria})
    again = conditional.resource("Patient", **patient_body(identifier_system, identifier_value))
    again.save()
    check(again.id == patient_id, f"conditional create of an existing identifier made Patient/{again.id}")
    found = ids(patients.search(identifier=f"{identifier_system}|{identifier_value}").fetch_all())
    check(found == [patient_id], f"after conditional create the identifier matches {found}")
    other_value = f"musubi-{run_tag}-other"
    other_client = SyncFHIRClient(base, authorization=authorization, extra_headers={"If-None-Exist": f"identifier={identifier_system}|{other_value}"})
    other = other_client.resource("Patient", **patient_body(identifier_system, other_value))
    other.save()
    check(bool(other.id) and other.id != patient_id, f"conditional create of a new identifier gave Patient/{other.id}")
    other_id = other.id
    found = ids(patients.search(identifier=f"{identifier_system}|{other_value}").fetch_all())
    check(found == [other_id], f"the new identifier matches {found}")

    step("delete, then read answers 410 Gone")
    client.delete("Patient", other_id)
    gone, _ = raw_get(client, f"Patient/{other_id}")
    check(gone == 410, f"read after delete answered {gone}, expected 410")
    try:
        client.get("Patient", other_id)
        raise Failure("fhirpy read a deleted Patient without an error")
    except ResourceNotFound:
        pass

    step("transaction Bundle with urn:uuid references")
    patient_urn = f"urn:uuid:{uuid.uuid4()}"
    observation_urn = f"urn:uuid:{uuid.uuid4()}"
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": observation_urn,
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]},
                    "subject": {"reference": patient_urn},
                    "effectiveDateTime": "2024-05-01",
                    "valueQuantity": {"value": 12.50, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "fullUrl": patient_urn,
                "resource": {
                    "resourceType": "Patient",
                    "name": [{"text": "佐藤\u3000花子", "family": "佐藤", "given": ["花子"]}],
                    "birthDate": "2022-07-07",
                },
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    response = client.execute("/", method="post", data=transaction)
    check(response["resourceType"] == "Bundle", f"transaction answered a {response['resourceType']}")
    check(response["type"] == "transaction-response", f"Bundle.type {response['type']}")
    statuses = [e["response"]["status"] for e in response["entry"]]
    check(all(s.startswith("201") for s in statuses), f"transaction entry statuses {statuses}")
    observation_location = response["entry"][0]["response"]["location"]
    patient_location = response["entry"][1]["response"]["location"]
    new_patient_id = patient_location.split("Patient/", 1)[1].split("/", 1)[0]
    observation_id = observation_location.split("Observation/", 1)[1].split("/", 1)[0]
    observation = client.get("Observation", observation_id)
    reference = observation["subject"]["reference"]
    check(reference == f"Patient/{new_patient_id}", f"Observation.subject is {reference!r}, expected Patient/{new_patient_id}")
    check(not reference.startswith("urn:uuid:"), "the urn:uuid reference was not rewritten")
    new_patient = client.get("Patient", new_patient_id)
    check(new_patient["name"][0]["text"] == "佐藤\u3000花子", f"transaction Patient name {new_patient['name'][0]['text']!r}")
    found = client.resources("Observation").search(subject=f"Patient/{new_patient_id}").fetch_all()
    check(ids(found) == [observation_id], f"Observation?subject=Patient/{new_patient_id} found {ids(found)}")

    print("all fhirpy checks passed")
    print(f"PATIENT_ID={patient_id}")


def raw_get(client, path):
    """Status and raw body of a GET with the client's own headers: fhirpy decodes every body and
    turns 404 and 410 alike into ResourceNotFound."""
    request = urllib.request.Request(f"{client.url.rstrip('/')}/{path}", headers=client._build_request_headers())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    base = sys.argv[1].rstrip("/")
    try:
        run(base)
    except Failure as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    except OperationOutcome as outcome:
        print(f"FAILED: the server answered an OperationOutcome: {outcome}", file=sys.stderr)
        traceback.print_exc()
        return 1
    except Exception as error:  # noqa: BLE001 - any crash is a failed run, with its trace
        print(f"FAILED: {type(error).__name__}: {error}", file=sys.stderr)
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
