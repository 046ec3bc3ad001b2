//! Billing data (`profiles/jp/billing/*.json`): fee schedules per municipality with effective
//! periods, and the cross-municipality schemes with their membership, amount rule, claim route
//! and due days. Parsed once; errors name the file and the entry.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use identifiers::{MunicipalityCode, PrefectureCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::Date;

use crate::BillingError;
use crate::money::{MAX_FEE, Yen};
use crate::month::{YearMonth, day, format_day};

/// Musubi's vaccine-type CodeSystem; fee entries must use its codes.
pub const VACCINE_TYPE_SYSTEM: &str = "https://musubi.example.org/fhir/CodeSystem/vaccine-type";

/// One price: a vaccine type, optionally narrowed to a product and a dose number, valid over
/// `from..=to` (an open end when `to` is absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fee {
    pub vaccine_type: String,
    #[serde(default)]
    pub product: Option<String>,
    #[serde(default)]
    pub dose: Option<u32>,
    #[serde(with = "day")]
    pub from: Date,
    #[serde(default, with = "day::option")]
    pub to: Option<Date>,
    pub yen: Yen,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Fee {
    fn covers(&self, date: Date) -> bool {
        self.from <= date && self.to.is_none_or(|to| date <= to)
    }
}

/// A municipality's fee schedule (委託料 / 接種単価 table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeSchedule {
    pub municipality: MunicipalityCode,
    pub name: String,
    /// True for demonstration values that are not the municipality's published prices.
    pub illustrative: bool,
    pub source: String,
    pub fees: Vec<Fee>,
}

/// Which vaccinations a scheme covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SchemeKind {
    /// Home and clinic municipality are the same member (or any municipality when the scheme
    /// lists no members).
    Local,
    /// Home and clinic municipality differ and both are members (相互乗り入れ).
    Mutual,
    /// The home municipality is a member and no mutual scheme covers the pair (e.g. a Tokyo
    /// ward's resident vaccinated outside the 23 wards with a 予防接種実施依頼書).
    Outside,
}

/// Whose fee schedule prices the vaccination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AmountRule {
    /// The clinic's municipality (B).
    ClinicMunicipality,
    /// The resident's home municipality (A).
    HomeMunicipality,
    /// B's price, capped at A's unit price (上限).
    ClinicCappedAtHome,
}

/// Who bills whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClaimRoute {
    /// The clinic reports to its medical association, which bills the clinic's municipality
    /// (B); B then bills the home municipality (A).
    ViaClinicMunicipality,
    /// The medical association bills the home municipality (A) directly.
    DirectToHome,
    /// The medical association submits to the prefecture's 国保連 (国民健康保険団体連合会,
    /// kokuho-ren), which bills the home municipality.
    ViaKokuhoRen,
}

/// A due day: day `day` of the month `months_after` months after the closed month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DueDay {
    pub day: u8,
    pub months_after: u8,
}

impl DueDay {
    /// The due date for a closed month.
    pub fn date_for(self, month: YearMonth) -> Date {
        month
            .plus_months(u32::from(self.months_after))
            .day(self.day)
            .expect("due days are 1–28, which exist in every month (checked at load)")
    }
}

/// A billing scheme (相互乗り入れ or similar agreement).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scheme {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub kind: SchemeKind,
    #[serde(default)]
    pub members: Vec<MunicipalityCode>,
    pub amount: AmountRule,
    pub route: ClaimRoute,
    /// The prefecture whose 国保連 receives the claims (route `via-kokuho-ren` only).
    #[serde(default)]
    pub kokuho_ren: Option<PrefectureCode>,
    /// When the medical association's claim is due.
    pub association_due: DueDay,
    /// When the second leg (B → A, or 国保連 → A) is due; required for those routes.
    #[serde(default)]
    pub settlement_due: Option<DueDay>,
    #[serde(default)]
    pub sources: Vec<String>,
    /// The fields whose values are inferred rather than sourced (e.g. `amount`, `route`).
    #[serde(default)]
    pub inferred: Vec<String>,
}

impl Scheme {
    fn has(&self, code: &MunicipalityCode) -> bool {
        self.members.contains(code)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemesFile {
    #[serde(default)]
    description: String,
    schemes: Vec<Scheme>,
}

/// Which file the data came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub file: String,
    pub kind: String,
    pub description: String,
}

/// Why no fee was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeeMiss {
    NoSchedule,
    NoEntry,
}

/// Fee schedules and schemes, parsed and checked.
#[derive(Debug, Clone, Default)]
pub struct BillingData {
    files: Vec<FileInfo>,
    schedules: BTreeMap<MunicipalityCode, FeeSchedule>,
    schemes: Vec<Scheme>,
}

static EMBEDDED: OnceLock<Result<BillingData, String>> = OnceLock::new();

impl BillingData {
    /// The data embedded from `profiles/jp/billing/`, parsed once.
    pub fn embedded() -> Result<&'static BillingData, BillingError> {
        EMBEDDED
            .get_or_init(|| {
                Self::from_files(profiles::JP_BILLING.iter().map(|(n, t)| (*n, *t)))
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|message| BillingError::Invalid {
                file: "profiles/jp/billing".to_owned(),
                message: message.clone(),
            })
    }

    /// The embedded files plus `extra` `(file name, contents)` files applied after them: a fee
    /// schedule replaces the whole schedule of its municipality; a scheme replaces the scheme with
    /// the same id in place (keeping its priority), a new one is appended.
    pub fn load(extra: &[(String, String)]) -> Result<BillingData, BillingError> {
        Self::from_files(
            profiles::JP_BILLING
                .iter()
                .map(|(n, t)| (*n, *t))
                .chain(extra.iter().map(|(n, t)| (n.as_str(), t.as_str()))),
        )
    }

    /// Only the given files, in order (no embedded data).
    pub fn from_files<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<BillingData, BillingError> {
        let mut data = BillingData::default();
        let mut scheme_files: BTreeMap<String, String> = BTreeMap::new();
        for (name, text) in files {
            let json = |source| BillingError::Json {
                file: name.to_owned(),
                source,
            };
            let invalid = |message: String| BillingError::Invalid {
                file: name.to_owned(),
                message,
            };
            // Parsed to a Value first and dispatched on `kind`: serde's internally tagged enums
            // buffer numbers, which breaks with serde_json's arbitrary_precision feature.
            let mut value: Value = serde_json::from_str(text).map_err(json)?;
            let kind = value
                .as_object_mut()
                .and_then(|o| o.remove("kind"))
                .and_then(|k| k.as_str().map(str::to_owned));
            match kind.as_deref() {
                Some("fee-schedule") => {
                    let schedule: FeeSchedule = serde_json::from_value(value).map_err(json)?;
                    check_schedule(&schedule).map_err(invalid)?;
                    data.files.push(FileInfo {
                        file: name.to_owned(),
                        kind: "fee-schedule".to_owned(),
                        description: format!("{} {}", schedule.municipality, schedule.name),
                    });
                    data.schedules
                        .insert(schedule.municipality.clone(), schedule);
                }
                Some("schemes") => {
                    let file: SchemesFile = serde_json::from_value(value).map_err(json)?;
                    let mut seen = BTreeSet::new();
                    for scheme in file.schemes {
                        check_scheme(&scheme)
                            .map_err(|m| invalid(format!("scheme {:?}: {m}", scheme.id)))?;
                        if !seen.insert(scheme.id.clone()) {
                            return Err(invalid(format!(
                                "scheme id {:?} appears twice",
                                scheme.id
                            )));
                        }
                        scheme_files.insert(scheme.id.clone(), name.to_owned());
                        match data.schemes.iter_mut().find(|s| s.id == scheme.id) {
                            Some(slot) => *slot = scheme,
                            None => data.schemes.push(scheme),
                        }
                    }
                    data.files.push(FileInfo {
                        file: name.to_owned(),
                        kind: "schemes".to_owned(),
                        description: file.description,
                    });
                }
                Some(other) => {
                    return Err(invalid(format!(
                        "unknown kind {other:?} (expected \"fee-schedule\" or \"schemes\")"
                    )));
                }
                None => return Err(invalid("missing \"kind\"".to_owned())),
            }
        }
        data.check_overlaps(&scheme_files)?;
        Ok(data)
    }

    /// Two mutual schemes sharing two members would make the pair's scheme depend on file
    /// order, which is too easy to get wrong silently.
    fn check_overlaps(&self, files: &BTreeMap<String, String>) -> Result<(), BillingError> {
        let mutual: Vec<&Scheme> = self
            .schemes
            .iter()
            .filter(|s| s.kind == SchemeKind::Mutual)
            .collect();
        for (i, a) in mutual.iter().enumerate() {
            for b in &mutual[i + 1..] {
                let shared: Vec<&str> = a
                    .members
                    .iter()
                    .filter(|m| b.has(m))
                    .map(MunicipalityCode::as_str)
                    .collect();
                if shared.len() >= 2 {
                    return Err(BillingError::Invalid {
                        file: files.get(&b.id).cloned().unwrap_or_default(),
                        message: format!(
                            "mutual schemes {:?} and {:?} both cover municipalities {}",
                            a.id,
                            b.id,
                            shared.join(", ")
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    pub fn files(&self) -> &[FileInfo] {
        &self.files
    }

    pub fn schemes(&self) -> &[Scheme] {
        &self.schemes
    }

    pub fn scheme(&self, id: &str) -> Option<&Scheme> {
        self.schemes.iter().find(|s| s.id == id)
    }

    pub fn schedule(&self, municipality: &MunicipalityCode) -> Option<&FeeSchedule> {
        self.schedules.get(municipality)
    }

    pub fn schedules(&self) -> impl Iterator<Item = &FeeSchedule> {
        self.schedules.values()
    }

    /// The scheme for a resident of `home` vaccinated at a clinic in `clinic`: for the same
    /// municipality the first local scheme listing it (or listing no members); otherwise the
    /// first mutual scheme listing both, else the first outside scheme listing `home`.
    pub fn scheme_for(
        &self,
        home: &MunicipalityCode,
        clinic: &MunicipalityCode,
    ) -> Option<&Scheme> {
        let of_kind = |kind| self.schemes.iter().filter(move |s| s.kind == kind);
        if home == clinic {
            return of_kind(SchemeKind::Local).find(|s| s.members.is_empty() || s.has(home));
        }
        of_kind(SchemeKind::Mutual)
            .find(|s| s.has(home) && s.has(clinic))
            .or_else(|| of_kind(SchemeKind::Outside).find(|s| s.has(home)))
    }

    /// The price in `municipality`'s schedule on `date`. The most specific entry wins: product
    /// and dose, then product, then dose, then the vaccine type alone.
    pub fn fee(
        &self,
        municipality: &MunicipalityCode,
        vaccine_type: &str,
        product: Option<&str>,
        dose: Option<u32>,
        date: Date,
    ) -> Result<&Fee, FeeMiss> {
        let schedule = self
            .schedules
            .get(municipality)
            .ok_or(FeeMiss::NoSchedule)?;
        schedule
            .fees
            .iter()
            .filter(|f| {
                f.vaccine_type == vaccine_type
                    && f.product.as_deref().is_none_or(|p| Some(p) == product)
                    && f.dose.is_none_or(|d| Some(d) == dose)
                    && f.covers(date)
            })
            .max_by_key(|f| (f.product.is_some(), f.dose.is_some()))
            .ok_or(FeeMiss::NoEntry)
    }
}

fn vaccine_types() -> &'static BTreeSet<String> {
    static TYPES: OnceLock<BTreeSet<String>> = OnceLock::new();
    TYPES.get_or_init(|| {
        profiles::JP_TERMINOLOGY
            .iter()
            .filter_map(|(_, text)| serde_json::from_str::<Value>(text).ok())
            .find(|v| v.get("url").and_then(Value::as_str) == Some(VACCINE_TYPE_SYSTEM))
            .and_then(|cs| {
                cs.get("concept")?.as_array().map(|concepts| {
                    concepts
                        .iter()
                        .filter_map(|c| c.get("code")?.as_str().map(str::to_owned))
                        .collect()
                })
            })
            .unwrap_or_default()
    })
}

fn check_schedule(schedule: &FeeSchedule) -> Result<(), String> {
    if schedule.source.trim().is_empty() {
        return Err("a fee schedule must name its source".to_owned());
    }
    let known = vaccine_types();
    for (i, fee) in schedule.fees.iter().enumerate() {
        let at = |m: String| format!("fees[{i}] ({}): {m}", fee.vaccine_type);
        if !known.contains(&fee.vaccine_type) {
            return Err(at(format!(
                "unknown vaccine type (not a code of {VACCINE_TYPE_SYSTEM})"
            )));
        }
        if fee.dose == Some(0) {
            return Err(at("dose numbers start at 1".to_owned()));
        }
        if fee.product.as_deref().is_some_and(|p| p.trim().is_empty()) {
            return Err(at("an empty product; omit it instead".to_owned()));
        }
        if fee.to.is_some_and(|to| to < fee.from) {
            return Err(at("the period ends before it starts".to_owned()));
        }
        if fee.yen > MAX_FEE {
            return Err(at(format!("{} is above the {MAX_FEE} limit", fee.yen)));
        }
        for (j, other) in schedule.fees[..i].iter().enumerate() {
            let same_key = other.vaccine_type == fee.vaccine_type
                && other.product == fee.product
                && other.dose == fee.dose;
            let overlap = other.to.is_none_or(|to| fee.from <= to)
                && fee.to.is_none_or(|to| other.from <= to);
            if same_key && overlap {
                return Err(at(format!(
                    "its period from {} overlaps fees[{j}] for the same vaccine, product and dose",
                    format_day(fee.from)
                )));
            }
        }
    }
    Ok(())
}

fn check_scheme(scheme: &Scheme) -> Result<(), String> {
    if scheme.id.is_empty()
        || !scheme
            .id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err("the id must be non-empty letters, digits and '-'".to_owned());
    }
    for due in [Some(scheme.association_due), scheme.settlement_due]
        .into_iter()
        .flatten()
    {
        if !(1..=28).contains(&due.day) {
            return Err(format!(
                "due day {} is outside 1–28 (days that exist in every month)",
                due.day
            ));
        }
        if !(1..=12).contains(&due.months_after) {
            return Err(format!("months_after {} is outside 1–12", due.months_after));
        }
    }
    let settles = matches!(
        scheme.route,
        ClaimRoute::ViaClinicMunicipality | ClaimRoute::ViaKokuhoRen
    );
    if settles && scheme.settlement_due.is_none() {
        return Err("this route has a second leg, so it needs settlement_due".to_owned());
    }
    if !settles && scheme.settlement_due.is_some() {
        return Err("route direct-to-home has no second leg; remove settlement_due".to_owned());
    }
    if (scheme.route == ClaimRoute::ViaKokuhoRen) != scheme.kokuho_ren.is_some() {
        return Err(
            "kokuho_ren (a prefecture code) is required for, and only for, route via-kokuho-ren"
                .to_owned(),
        );
    }
    match scheme.kind {
        SchemeKind::Local if scheme.route == ClaimRoute::ViaClinicMunicipality => Err(
            "a local scheme has one municipality, so route via-clinic-municipality makes no sense"
                .to_owned(),
        ),
        SchemeKind::Mutual if scheme.members.len() < 2 && !scheme.members.is_empty() => {
            Err("a mutual scheme needs at least two members (or none, as a template)".to_owned())
        }
        _ => Ok(()),
    }
}
