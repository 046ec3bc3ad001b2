//! A claim batch as an R4 Claim (<http://hl7.org/fhir/R4/claim.html>): `use` claim, the billed
//! party as `insurer`, the claimant as `provider`, one `item` per line with `net` in whole yen.

use identifiers::{MEDICAL_INSTITUTION_CODE_SYSTEM, MUNICIPALITY_CODE_SYSTEM};
use serde_json::{Value, json};

use crate::close::{ClaimBatch, Party};
use crate::data::{BillingData, VACCINE_TYPE_SYSTEM};
use crate::month::format_day;

/// Identifier system of Musubi's claim batches (the value is the batch id).
pub const CLAIM_BATCH_SYSTEM: &str = "https://musubi.example.org/fhir/IdSystem/claim-batch";
/// Identifier system of a prefecture's 国保連, by the two-digit prefecture code; Musubi's own,
/// as no national identifier system for them was found.
pub const KOKUHO_REN_SYSTEM: &str = "https://musubi.example.org/fhir/IdSystem/kokuho-ren";
/// Extension on `Claim.item`: the resident's home municipality (valueIdentifier).
pub const HOME_MUNICIPALITY_EXTENSION: &str =
    "https://musubi.example.org/fhir/StructureDefinition/claim-home-municipality";
/// Extension on `Claim.item`: the scheme that priced the line (valueCode).
pub const BILLING_SCHEME_EXTENSION: &str =
    "https://musubi.example.org/fhir/StructureDefinition/billing-scheme";
/// Extension on `Claim.item`: the dose number (valuePositiveInt).
pub const DOSE_NUMBER_EXTENSION: &str =
    "https://musubi.example.org/fhir/StructureDefinition/dose-number";
/// Extension on `Claim.item`: the vaccine product code that selected a product price
/// (valueString).
pub const VACCINE_PRODUCT_EXTENSION: &str =
    "https://musubi.example.org/fhir/StructureDefinition/vaccine-product";

const DATA_ABSENT_REASON: &str = "http://hl7.org/fhir/StructureDefinition/data-absent-reason";

/// The batch as an R4 Claim with the batch id as resource id.
///
/// A batch covers many residents, while R4 requires `Claim.patient` (1..1): it carries the
/// `data-absent-reason` extension `not-applicable`, and each item names its Immunization through
/// `supportingInfo`. `insurance` (1..*) names the public funding by display only, as no Coverage
/// resource exists for it. `created` is the first day after the closed month, so the resource is
/// a pure function of the batch.
pub fn claim_resource(batch: &ClaimBatch, data: &BillingData) -> Value {
    let mut clinics: Vec<&str> = Vec::new();
    for line in &batch.lines {
        if !clinics.contains(&line.clinic.as_str()) {
            clinics.push(line.clinic.as_str());
        }
    }
    let care_team: Vec<Value> = clinics
        .iter()
        .zip(1u32..)
        .map(|(code, sequence)| {
            json!({
                "sequence": sequence,
                "provider": {"identifier": {"system": MEDICAL_INSTITUTION_CODE_SYSTEM, "value": code}}
            })
        })
        .collect();
    let mut supporting_info = Vec::with_capacity(batch.lines.len());
    let mut items = Vec::with_capacity(batch.lines.len());
    for (line, sequence) in batch.lines.iter().zip(1u32..) {
        supporting_info.push(json!({
            "sequence": sequence,
            "category": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/claiminformationcategory",
                "code": "info"
            }]},
            "valueReference": {"reference": format!("Immunization/{}", line.immunization_id)}
        }));
        let mut extension = vec![
            json!({
                "url": HOME_MUNICIPALITY_EXTENSION,
                "valueIdentifier": {"system": MUNICIPALITY_CODE_SYSTEM, "value": line.home_municipality.as_str()}
            }),
            json!({"url": BILLING_SCHEME_EXTENSION, "valueCode": line.scheme}),
        ];
        if let Some(dose) = line.dose_number {
            extension.push(json!({"url": DOSE_NUMBER_EXTENSION, "valuePositiveInt": dose}));
        }
        if let Some(product) = &line.product {
            extension.push(json!({"url": VACCINE_PRODUCT_EXTENSION, "valueString": product}));
        }
        let team = clinics
            .iter()
            .position(|c| *c == line.clinic.as_str())
            .map_or(1, |i| i + 1);
        items.push(json!({
            "extension": extension,
            "sequence": sequence,
            "careTeamSequence": [team],
            "informationSequence": [sequence],
            "productOrService": {"coding": [{"system": VACCINE_TYPE_SYSTEM, "code": line.vaccine_type}]},
            "servicedDate": format_day(line.date),
            "net": {"value": line.amount.amount(), "currency": "JPY"}
        }));
    }
    let created = batch.month.plus_months(1).first_day();
    json!({
        "resourceType": "Claim",
        "id": batch.id,
        "identifier": [{"system": CLAIM_BATCH_SYSTEM, "value": batch.id}],
        "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
        "use": "claim",
        "patient": {"extension": [{"url": DATA_ABSENT_REASON, "valueCode": "not-applicable"}]},
        "billablePeriod": {"start": format_day(batch.month.first_day()), "end": format_day(batch.month.last_day())},
        "created": format_day(created),
        "insurer": party_reference(&batch.payer, data),
        "provider": party_reference(&batch.claimant, data),
        "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
        "careTeam": care_team,
        "supportingInfo": supporting_info,
        "insurance": [{"sequence": 1, "focal": true, "coverage": {"display": "予防接種の公費負担"}}],
        "item": items,
        "total": {"value": batch.total.amount(), "currency": "JPY"}
    })
}

/// An Organization reference: a medical association by id on this server; a municipality by
/// its local-government code (with the schedule's name as display when known); a 国保連 by
/// prefecture code.
fn party_reference(party: &Party, data: &BillingData) -> Value {
    match party {
        Party::MedicalAssociation(id) => json!({"reference": format!("Organization/{id}")}),
        Party::Municipality(code) => {
            let mut reference = json!({
                "type": "Organization",
                "identifier": {"system": MUNICIPALITY_CODE_SYSTEM, "value": code.as_str()}
            });
            if let Some(schedule) = data.schedule(code) {
                reference["display"] = json!(schedule.name);
            }
            reference
        }
        Party::KokuhoRen(prefecture) => json!({
            "type": "Organization",
            "identifier": {"system": KOKUHO_REN_SYSTEM, "value": prefecture.to_string()},
            "display": format!("{}国民健康保険団体連合会", prefecture.name_ja())
        }),
    }
}
