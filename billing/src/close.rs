//! Month close: a month's billable vaccinations become, per medical association, a report and
//! claim batch to each billed party, and, per municipality, the second-leg claims (B → A or
//! 国保連 → A); everything that cannot be priced is reported as an exception, never dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use identifiers::{FacilityCode, MunicipalityCode, PrefectureCode};
use serde::{Deserialize, Serialize, Serializer};
use sha2::{Digest, Sha256};
use time::Date;

use crate::data::{AmountRule, BillingData, ClaimRoute, FeeMiss, Scheme};
use crate::money::Yen;
use crate::month::{YearMonth, day, format_day};

/// Whether the home municipality's rules (the routine-vaccination engine) found the dose
/// publicly funded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Eligibility {
    PubliclyFunded,
    NotPubliclyFunded,
}

/// One vaccination as the gateway gathers it for month close.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillableVaccination {
    pub immunization_id: String,
    /// The resident's home municipality (A).
    pub home_municipality: MunicipalityCode,
    /// The performing clinic's 医療機関コード.
    #[serde(with = "facility")]
    pub clinic: FacilityCode,
    /// The municipality the clinic is in (B).
    pub clinic_municipality: MunicipalityCode,
    /// The clinic's medical association (医師会): its Organization id on Musubi.
    pub medical_association: String,
    /// A code of Musubi's vaccine-type CodeSystem.
    pub vaccine_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dose_number: Option<u32>,
    #[serde(with = "day")]
    pub date: Date,
    pub eligibility: Eligibility,
}

mod facility {
    use identifiers::FacilityCode;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(code: &FacilityCode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(code.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<FacilityCode, D::Error> {
        let text = String::deserialize(d)?;
        FacilityCode::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A party that bills or is billed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Party {
    /// A medical association (医師会) by its Organization id on Musubi.
    MedicalAssociation(String),
    Municipality(MunicipalityCode),
    /// The 国保連 of a prefecture.
    KokuhoRen(PrefectureCode),
}

impl Party {
    /// `medical-association:{id}`, `municipality:{code}` or `kokuho-ren:{prefecture}`.
    pub fn key(&self) -> String {
        match self {
            Party::MedicalAssociation(id) => format!("medical-association:{id}"),
            Party::Municipality(code) => format!("municipality:{code}"),
            Party::KokuhoRen(prefecture) => format!("kokuho-ren:{prefecture}"),
        }
    }
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

impl Serialize for Party {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.key())
    }
}

/// Which leg of the claim chain a batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BatchKind {
    /// A medical association's report and claim for its clinics' vaccinations.
    AssociationClaim,
    /// The second leg: the clinic's municipality (or the 国保連) bills the home municipality.
    SettlementClaim,
}

impl BatchKind {
    pub fn code(self) -> &'static str {
        match self {
            BatchKind::AssociationClaim => "association-claim",
            BatchKind::SettlementClaim => "settlement-claim",
        }
    }
}

/// One priced vaccination in a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimLine {
    pub immunization_id: String,
    #[serde(with = "day")]
    pub date: Date,
    pub home_municipality: MunicipalityCode,
    #[serde(serialize_with = "facility::serialize")]
    pub clinic: FacilityCode,
    pub clinic_municipality: MunicipalityCode,
    pub vaccine_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dose_number: Option<u32>,
    /// The scheme that priced and routed the line.
    pub scheme: String,
    /// Whose fee schedule gave the amount.
    pub priced_by: MunicipalityCode,
    pub amount: Yen,
    /// The clinic municipality's price when the home municipality's cap lowered it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capped_from: Option<Yen>,
}

/// A batch of lines from one party to another, due on one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimBatch {
    /// Deterministic: the same month, kind, parties and due date give the same id.
    pub id: String,
    pub kind: BatchKind,
    pub month: YearMonth,
    pub claimant: Party,
    pub payer: Party,
    #[serde(with = "day")]
    pub due_date: Date,
    /// In date order, then by immunization id.
    pub lines: Vec<ClaimLine>,
    pub total: Yen,
}

/// Why a vaccination could not be billed although it should have been.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExceptionKind {
    /// Its date is not in the closed month.
    OutsideMonth,
    /// The same immunization id was given twice; the first one is billed.
    DuplicateImmunization,
    /// No scheme covers its home and clinic municipalities.
    NoScheme,
    /// The pricing municipality has no fee schedule.
    NoFeeSchedule,
    /// The schedule has no entry for the vaccine, product, dose and date.
    NoFee,
}

/// A vaccination left out of the claims, with the reason, for an operator to correct.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BillingException {
    pub immunization_id: String,
    pub kind: ExceptionKind,
    pub message: String,
}

/// A vaccination deliberately not billed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotBilled {
    pub immunization_id: String,
    pub reason: String,
}

/// The result of closing a month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonthClose {
    pub month: YearMonth,
    /// One per (medical association, billed party, due date), ordered by those keys.
    pub association_claims: Vec<ClaimBatch>,
    /// One per (claimant, home municipality, due date), ordered by those keys.
    pub settlement_claims: Vec<ClaimBatch>,
    pub not_billed: Vec<NotBilled>,
    pub exceptions: Vec<BillingException>,
}

impl MonthClose {
    /// The sum of the medical associations' claims.
    pub fn association_total(&self) -> Yen {
        self.association_claims.iter().map(|b| b.total).sum()
    }
}

type BatchKey = (Party, Party, Date);

/// Closes `month`: prices each publicly funded vaccination by its scheme, groups the lines into
/// claim batches with their due dates, and reports what could not be billed.
pub fn close_month(
    month: YearMonth,
    vaccinations: &[BillableVaccination],
    data: &BillingData,
) -> MonthClose {
    let mut first_leg: BTreeMap<BatchKey, Vec<ClaimLine>> = BTreeMap::new();
    let mut second_leg: BTreeMap<BatchKey, Vec<ClaimLine>> = BTreeMap::new();
    let mut not_billed = Vec::new();
    let mut exceptions = Vec::new();
    let mut seen = BTreeSet::new();
    for v in vaccinations {
        let exception = |kind, message: String| BillingException {
            immunization_id: v.immunization_id.clone(),
            kind,
            message,
        };
        if !seen.insert(v.immunization_id.as_str()) {
            exceptions.push(exception(
                ExceptionKind::DuplicateImmunization,
                "given more than once; only the first is billed".to_owned(),
            ));
            continue;
        }
        if !month.contains(v.date) {
            exceptions.push(exception(
                ExceptionKind::OutsideMonth,
                format!("vaccinated on {}, not in {month}", format_day(v.date)),
            ));
            continue;
        }
        if v.eligibility == Eligibility::NotPubliclyFunded {
            not_billed.push(NotBilled {
                immunization_id: v.immunization_id.clone(),
                reason: format!(
                    "not publicly funded under the rules of the home municipality {}",
                    v.home_municipality
                ),
            });
            continue;
        }
        let Some(scheme) = data.scheme_for(&v.home_municipality, &v.clinic_municipality) else {
            exceptions.push(exception(
                ExceptionKind::NoScheme,
                format!(
                    "no scheme covers a resident of {} vaccinated at a clinic in {}",
                    v.home_municipality, v.clinic_municipality
                ),
            ));
            continue;
        };
        let line = match price(v, scheme, data) {
            Ok(line) => line,
            Err((kind, message)) => {
                exceptions.push(exception(kind, message));
                continue;
            }
        };
        let association = Party::MedicalAssociation(v.medical_association.clone());
        let home = Party::Municipality(v.home_municipality.clone());
        let first_due = scheme.association_due.date_for(month);
        let second_due = scheme.settlement_due.map(|d| d.date_for(month));
        match (scheme.route, second_due) {
            (ClaimRoute::DirectToHome, _) | (_, None) => {
                first_leg
                    .entry((association, home, first_due))
                    .or_default()
                    .push(line);
            }
            (ClaimRoute::ViaClinicMunicipality, Some(second)) => {
                let clinic_municipality = Party::Municipality(v.clinic_municipality.clone());
                second_leg
                    .entry((clinic_municipality.clone(), home, second))
                    .or_default()
                    .push(line.clone());
                first_leg
                    .entry((association, clinic_municipality, first_due))
                    .or_default()
                    .push(line);
            }
            (ClaimRoute::ViaKokuhoRen, Some(second)) => {
                let kokuho_ren = Party::KokuhoRen(
                    scheme
                        .kokuho_ren
                        .expect("route via-kokuho-ren names its prefecture (checked at load)"),
                );
                second_leg
                    .entry((kokuho_ren.clone(), home, second))
                    .or_default()
                    .push(line.clone());
                first_leg
                    .entry((association, kokuho_ren, first_due))
                    .or_default()
                    .push(line);
            }
        }
    }
    MonthClose {
        month,
        association_claims: batches(month, BatchKind::AssociationClaim, first_leg),
        settlement_claims: batches(month, BatchKind::SettlementClaim, second_leg),
        not_billed,
        exceptions,
    }
}

fn price(
    v: &BillableVaccination,
    scheme: &Scheme,
    data: &BillingData,
) -> Result<ClaimLine, (ExceptionKind, String)> {
    let lookup = |municipality: &MunicipalityCode| {
        data.fee(
            municipality,
            &v.vaccine_type,
            v.product.as_deref(),
            v.dose_number,
            v.date,
        )
        .map(|fee| fee.yen)
        .map_err(|miss| miss_exception(miss, municipality, v))
    };
    let (priced_by, amount, capped_from) = match scheme.amount {
        AmountRule::ClinicMunicipality => (
            v.clinic_municipality.clone(),
            lookup(&v.clinic_municipality)?,
            None,
        ),
        AmountRule::HomeMunicipality => (
            v.home_municipality.clone(),
            lookup(&v.home_municipality)?,
            None,
        ),
        AmountRule::ClinicCappedAtHome => {
            let clinic_price = lookup(&v.clinic_municipality)?;
            let cap = lookup(&v.home_municipality)?;
            if cap < clinic_price {
                (v.home_municipality.clone(), cap, Some(clinic_price))
            } else {
                (v.clinic_municipality.clone(), clinic_price, None)
            }
        }
    };
    Ok(ClaimLine {
        immunization_id: v.immunization_id.clone(),
        date: v.date,
        home_municipality: v.home_municipality.clone(),
        clinic: v.clinic.clone(),
        clinic_municipality: v.clinic_municipality.clone(),
        vaccine_type: v.vaccine_type.clone(),
        product: v.product.clone(),
        dose_number: v.dose_number,
        scheme: scheme.id.clone(),
        priced_by,
        amount,
        capped_from,
    })
}

fn miss_exception(
    miss: FeeMiss,
    municipality: &MunicipalityCode,
    v: &BillableVaccination,
) -> (ExceptionKind, String) {
    match miss {
        FeeMiss::NoSchedule => (
            ExceptionKind::NoFeeSchedule,
            format!("municipality {municipality} has no fee schedule"),
        ),
        FeeMiss::NoEntry => (
            ExceptionKind::NoFee,
            format!(
                "the fee schedule of {municipality} has no price for {} (product {}, dose {}) on {}",
                v.vaccine_type,
                v.product.as_deref().unwrap_or("any"),
                v.dose_number
                    .map_or_else(|| "any".to_owned(), |d| d.to_string()),
                format_day(v.date)
            ),
        ),
    }
}

fn batches(
    month: YearMonth,
    kind: BatchKind,
    groups: BTreeMap<BatchKey, Vec<ClaimLine>>,
) -> Vec<ClaimBatch> {
    groups
        .into_iter()
        .map(|((claimant, payer, due_date), mut lines)| {
            lines.sort_by(|a, b| (a.date, &a.immunization_id).cmp(&(b.date, &b.immunization_id)));
            let total = lines.iter().map(|l| l.amount).sum();
            ClaimBatch {
                id: batch_id(month, kind, &claimant, &payer, due_date),
                kind,
                month,
                claimant,
                payer,
                due_date,
                lines,
                total,
            }
        })
        .collect()
}

/// The first 128 bits of the SHA-256 of the batch's natural key, in hex.
pub fn batch_id(
    month: YearMonth,
    kind: BatchKind,
    claimant: &Party,
    payer: &Party,
    due_date: Date,
) -> String {
    let mut hasher = Sha256::new();
    for part in [
        "musubi-claim-batch-v1".to_owned(),
        month.to_string(),
        kind.code().to_owned(),
        claimant.key(),
        payer.key(),
        format_day(due_date),
    ] {
        // Length-prefixed, so no two different key lists hash the same text.
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
