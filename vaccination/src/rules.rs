//! The schedule rules as data: the typed form of the files in `profiles/jp/vaccination/`
//! (routine schedules, cross-vaccine interval rules, municipal overrides), parsed and checked once.
//!
//! File format and the meaning of every field: docs/vaccination-rules.md.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;
use time::{Date, Month};

use crate::calendar;

/// A problem in a rules file, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("{file}: {source}")]
    Json {
        file: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

/// A calendar day written `YYYY-MM-DD` in the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct Day(pub Date);

impl TryFrom<String> for Day {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        Date::parse(&text, format)
            .map(Day)
            .map_err(|e| format!("invalid date {text:?} (want YYYY-MM-DD): {e}"))
    }
}

/// Which end of a fiscal year (年度) an age expression names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Edge {
    /// 初日, 1 April.
    First,
    /// 末日, 31 March.
    Last,
}

/// A day fixed by a person's birth date (or an absolute day), as the rules word it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawAge")]
pub enum AgeExpr {
    /// 「生後M月」: the day M months of age are reached.
    Months(u32),
    /// 「N歳」: the day age N is reached (the day before the birthday).
    Years(u32),
    /// 「出生X週Y日後」: birth + 7X + Y days.
    WeeksAfterBirth { weeks: u32, days: u32 },
    /// 「N歳となる日の属する年度の初日/末日」.
    FiscalYearOfAge { age: u32, edge: Edge },
    /// A fixed calendar day, whatever the birth date.
    Date(Date),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAge {
    months: Option<u32>,
    years: Option<u32>,
    weeks: Option<u32>,
    days: Option<u32>,
    fiscal_year_of_age: Option<u32>,
    edge: Option<Edge>,
    date: Option<Day>,
}

impl TryFrom<RawAge> for AgeExpr {
    type Error = String;
    fn try_from(raw: RawAge) -> Result<Self, Self::Error> {
        match raw {
            RawAge {
                months: Some(m),
                years: None,
                weeks: None,
                days: None,
                fiscal_year_of_age: None,
                edge: None,
                date: None,
            } => Ok(AgeExpr::Months(m)),
            RawAge {
                months: None,
                years: Some(y),
                weeks: None,
                days: None,
                fiscal_year_of_age: None,
                edge: None,
                date: None,
            } => Ok(AgeExpr::Years(y)),
            RawAge {
                months: None,
                years: None,
                weeks: Some(w),
                days,
                fiscal_year_of_age: None,
                edge: None,
                date: None,
            } => Ok(AgeExpr::WeeksAfterBirth {
                weeks: w,
                days: days.unwrap_or(0),
            }),
            RawAge {
                months: None,
                years: None,
                weeks: None,
                days: None,
                fiscal_year_of_age: Some(age),
                edge: Some(edge),
                date: None,
            } => Ok(AgeExpr::FiscalYearOfAge { age, edge }),
            RawAge {
                months: None,
                years: None,
                weeks: None,
                days: None,
                fiscal_year_of_age: None,
                edge: None,
                date: Some(d),
            } => Ok(AgeExpr::Date(d.0)),
            _ => Err(
                "an age is exactly one of {\"months\"}, {\"years\"}, {\"weeks\", \"days\"}, \
                      {\"fiscal_year_of_age\", \"edge\"} or {\"date\"}"
                    .to_owned(),
            ),
        }
    }
}

impl AgeExpr {
    /// The day this expression names for a person born on `birth`.
    pub fn resolve(&self, birth: Date) -> Date {
        match *self {
            AgeExpr::Months(m) => calendar::months_of_age_reached(birth, m),
            AgeExpr::Years(y) => calendar::age_reached(birth, y),
            AgeExpr::WeeksAfterBirth { weeks, days } => {
                calendar::weeks_after_birth(birth, weeks, days)
            }
            AgeExpr::FiscalYearOfAge { age, edge } => {
                let year = calendar::fiscal_year_of_age(birth, age);
                match edge {
                    Edge::First => calendar::fiscal_year_first_day(year),
                    Edge::Last => calendar::fiscal_year_last_day(year),
                }
            }
            AgeExpr::Date(d) => d,
        }
    }

    /// The Japanese wording, for messages.
    pub fn wording(&self) -> String {
        match *self {
            AgeExpr::Months(m) => format!("生後{m}月"),
            AgeExpr::Years(y) => format!("{y}歳"),
            AgeExpr::WeeksAfterBirth { weeks, days } => format!("出生{weeks}週{days}日後"),
            AgeExpr::FiscalYearOfAge {
                age,
                edge: Edge::First,
            } => format!("{age}歳となる日の属する年度の初日"),
            AgeExpr::FiscalYearOfAge {
                age,
                edge: Edge::Last,
            } => format!("{age}歳となる日の属する年度の末日"),
            AgeExpr::Date(d) => d.to_string(),
        }
    }
}

/// A length of time between two doses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawLength")]
pub enum Length {
    Days(u32),
    Months(u32),
    /// 「N月半」.
    MonthsAndHalf(u32),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLength {
    days: Option<u32>,
    months: Option<u32>,
    #[serde(default)]
    half: bool,
}

impl TryFrom<RawLength> for Length {
    type Error = String;
    fn try_from(raw: RawLength) -> Result<Self, Self::Error> {
        match (raw.days, raw.months, raw.half) {
            (Some(d), None, false) => Ok(Length::Days(d)),
            (None, Some(m), false) => Ok(Length::Months(m)),
            (None, Some(m), true) => Ok(Length::MonthsAndHalf(m)),
            _ => Err(
                "a length is {\"days\": N}, {\"months\": N} or {\"months\": N, \"half\": true}"
                    .to_owned(),
            ),
        }
    }
}

impl Length {
    /// The first allowed day of "this length 以上" after `dose`.
    pub fn at_least_after(&self, dose: Date) -> Date {
        match *self {
            Length::Days(d) => calendar::after_days(dose, d),
            Length::Months(m) => calendar::after_months(dose, m),
            Length::MonthsAndHalf(m) => calendar::after_months_and_half(dose, m),
        }
    }

    /// The last day of "at most this length" after `dose`.
    pub fn at_most_after(&self, dose: Date) -> Date {
        match *self {
            Length::Days(d) => calendar::within_days(dose, d),
            Length::Months(m) => calendar::within_months(dose, m),
            Length::MonthsAndHalf(m) => {
                calendar::after_months_and_half(dose, m) - time::Duration::days(1)
            }
        }
    }

    /// The Japanese wording, e.g. "27日", "6か月", "2月半".
    pub fn wording(&self) -> String {
        match *self {
            Length::Days(d) => format!("{d}日"),
            Length::Months(m) => format!("{m}か月"),
            Length::MonthsAndHalf(m) => format!("{m}月半"),
        }
    }
}

/// Which earlier dose an interval counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "serde_json::Value")]
pub enum DoseRef {
    /// The last dose given before this one (in the same vaccine's series).
    Previous,
    /// The dose in this position (1-based over the whole variant).
    Dose(u32),
}

impl TryFrom<serde_json::Value> for DoseRef {
    type Error = String;
    fn try_from(value: serde_json::Value) -> Result<Self, Self::Error> {
        match &value {
            serde_json::Value::String(s) if s == "previous" => Ok(DoseRef::Previous),
            serde_json::Value::Number(n) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n >= 1)
                .map(DoseRef::Dose)
                .ok_or_else(|| {
                    format!("\"after\" must be \"previous\" or a dose number ≥ 1, not {value}")
                }),
            _ => Err(format!(
                "\"after\" must be \"previous\" or a dose number ≥ 1, not {value}"
            )),
        }
    }
}

/// A minimum or maximum interval from an earlier dose.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interval {
    pub after: DoseRef,
    pub length: Length,
    /// For a maximum: whether exceeding it makes the dose non-routine (`true`) or only leaves
    /// the standard schedule (`false`, the default). Minimums are always hard.
    #[serde(default)]
    pub hard: bool,
    /// The rule as worded in the source, e.g. 「20日以上の間隔をおいて」.
    #[serde(default)]
    pub wording: Option<String>,
}

/// A standard (recommended) range: ages, or an interval after an earlier dose.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recommended {
    #[serde(default)]
    pub from: Option<AgeExpr>,
    /// Inclusive: the last day of the standard period.
    #[serde(default)]
    pub to: Option<AgeExpr>,
    #[serde(default)]
    pub after: Option<DoseRef>,
    #[serde(default)]
    pub interval_from: Option<Length>,
    #[serde(default)]
    pub interval_to: Option<Length>,
    #[serde(default)]
    pub wording: Option<String>,
}

/// Skip this dose when an earlier dose was given after an age (e.g. PCV: the 3rd 初回 dose is
/// not given when the 2nd was given after 生後12月).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkipIf {
    pub dose: u32,
    pub given_after: AgeExpr,
    pub wording: String,
}

/// One dose of a series.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dose {
    /// The earliest age for this dose beyond the series' windows (e.g. PCV booster 生後12月).
    #[serde(default)]
    pub min_age: Option<AgeExpr>,
    /// The last day for this dose, inclusive (e.g. PCV 初回 2nd/3rd 「生後24月に至るまで」).
    #[serde(default)]
    pub max_age: Option<AgeExpr>,
    /// When `max_age` passes without this dose, skip it (go on to the next dose) instead of
    /// treating the rest of the series as missed.
    #[serde(default)]
    pub skip_when_late: bool,
    #[serde(default)]
    pub min_intervals: Vec<Interval>,
    #[serde(default)]
    pub max_interval: Option<Interval>,
    #[serde(default)]
    pub skip_if: Vec<SkipIf>,
    #[serde(default)]
    pub recommended: Option<Recommended>,
    #[serde(default)]
    pub wording: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default = "yes")]
    pub verified: bool,
    #[serde(default)]
    pub note: Option<String>,
}

fn yes() -> bool {
    true
}

/// A period of public funding: ages from birth, limited by birth cohort, by the calendar days
/// the rule was in force, or by an earlier dose in another window.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub id: String,
    /// First day; absent = from birth.
    #[serde(default)]
    pub from: Option<AgeExpr>,
    /// Last day, inclusive; absent = open-ended.
    #[serde(default)]
    pub to: Option<AgeExpr>,
    #[serde(default)]
    pub born_from: Option<Day>,
    #[serde(default)]
    pub born_to: Option<Day>,
    /// The first calendar day this window was in force.
    #[serde(default)]
    pub valid_from: Option<Day>,
    /// The last calendar day this window was in force.
    #[serde(default)]
    pub valid_to: Option<Day>,
    /// Only for people who had at least one dose inside the window of this id.
    #[serde(default)]
    pub requires_dose_in: Option<String>,
    /// The eligibility as worded in the source.
    pub wording: String,
    /// 「定期」 unless a municipality funds it on its own (e.g. 「区独自助成」).
    #[serde(default)]
    pub funding: Option<String>,
    pub source: String,
    #[serde(default = "yes")]
    pub verified: bool,
}

/// A recurring season (month-day to month-day, wrapping over the new year), e.g. 10-01 → 01-31.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawSeason")]
pub struct Season {
    pub from: (Month, u8),
    pub to: (Month, u8),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSeason {
    from: String,
    to: String,
}

fn month_day(text: &str) -> Result<(Month, u8), String> {
    let bad = || format!("invalid month-day {text:?} (want MM-DD)");
    let (m, d) = text.split_once('-').ok_or_else(bad)?;
    let month = m
        .parse::<u8>()
        .ok()
        .and_then(|m| Month::try_from(m).ok())
        .ok_or_else(bad)?;
    let day = d.parse::<u8>().map_err(|_| bad())?;
    // 29 February is allowed as a season edge only through the leap-year check at resolution.
    if day == 0 || day > month.length(2024) {
        return Err(bad());
    }
    Ok((month, day))
}

impl TryFrom<RawSeason> for Season {
    type Error = String;
    fn try_from(raw: RawSeason) -> Result<Self, Self::Error> {
        Ok(Season {
            from: month_day(&raw.from)?,
            to: month_day(&raw.to)?,
        })
    }
}

impl Season {
    fn day(year: i32, (month, day): (Month, u8)) -> Date {
        let day = day.min(month.length(year));
        Date::from_calendar_date(year, month, day).unwrap_or(Date::MIN)
    }

    /// The season that starts in calendar year `year`: (first, last).
    pub fn starting_in(&self, year: i32) -> (Date, Date) {
        let first = Self::day(year, self.from);
        let mut last = Self::day(year, self.to);
        if last < first {
            last = Self::day(year + 1, self.to);
        }
        (first, last)
    }

    /// The season containing `day`, or else the next one to start.
    pub fn current_or_next(&self, day: Date) -> (Date, Date) {
        for year in [day.year() - 1, day.year(), day.year() + 1] {
            let (first, last) = self.starting_in(year);
            if day <= last {
                return (first, last);
            }
        }
        self.starting_in(day.year() + 1)
    }

    /// The season containing `day`, if any.
    pub fn containing(&self, day: Date) -> Option<(Date, Date)> {
        let (first, last) = self.current_or_next(day);
        (first <= day).then_some((first, last))
    }

    pub fn wording(&self) -> String {
        format!(
            "{}/{}〜{}/{}",
            u8::from(self.from.0),
            self.from.1,
            u8::from(self.to.0),
            self.to.1
        )
    }
}

/// A series (期), e.g. 1期初回, 1期追加, 2期.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Series {
    pub id: String,
    /// Funding windows for this series; absent = the vaccine's windows.
    #[serde(default)]
    pub windows: Option<Vec<Window>>,
    /// A seasonal series: one dose per season (the doses list then has one entry).
    #[serde(default)]
    pub seasonal: bool,
    /// The season when the series is seasonal; a municipality may override it by vaccine code.
    #[serde(default)]
    pub season: Option<Season>,
    pub doses: Vec<Dose>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default = "yes")]
    pub verified: bool,
}

/// The series for one way of starting the vaccine (e.g. PCV started at 2–7か月 vs 7–12か月).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub id: String,
    /// The last day (inclusive) the first dose may fall on for this variant; variants are tried
    /// in order and the first whose `start_to` is not before the first dose applies.
    #[serde(default)]
    pub start_to: Option<AgeExpr>,
    /// Only when the first dose was one of these vaccine codes (HPV 9価 2-dose path).
    #[serde(default)]
    pub first_dose_of: Option<Vec<String>>,
    #[serde(default)]
    pub wording: Option<String>,
    pub series: Vec<Series>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default = "yes")]
    pub verified: bool,
}

/// 定期接種の類型: A類 (mainly children, 努力義務) or B類 (mainly older adults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Class {
    A,
    B,
}

/// What kind of vaccine this is, for the rules between different vaccines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VaccineKind {
    /// 注射生ワクチン.
    InjectableLive,
    /// 経口生ワクチン.
    OralLive,
    /// 不活化ワクチン (and other non-live vaccines).
    Inactivated,
}

/// Which sex a vaccine is routine for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SexRule {
    Female,
    Male,
}

/// One vaccine type (a code of the vaccine-type CodeSystem) and its routine rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vaccine {
    pub code: String,
    pub display: String,
    pub class: Class,
    pub kind: VaccineKind,
    pub kind_source: String,
    #[serde(default)]
    pub routine_from: Option<Day>,
    #[serde(default)]
    pub routine_to: Option<Day>,
    #[serde(default)]
    pub routine_wording: Option<String>,
    #[serde(default)]
    pub born_from: Option<Day>,
    #[serde(default)]
    pub born_to: Option<Day>,
    #[serde(default)]
    pub sex: Option<SexRule>,
    /// Other vaccine codes whose doses count toward this vaccine's series (e.g. 2価/4価 HPV doses
    /// before switching to 9価).
    #[serde(default)]
    pub counts_doses_of: Vec<String>,
    #[serde(default)]
    pub windows: Vec<Window>,
    pub variants: Vec<Variant>,
    pub source: String,
    #[serde(default = "yes")]
    pub verified: bool,
    #[serde(default)]
    pub note: Option<String>,
}

impl Vaccine {
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The Japanese display name.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// Whether doses of `code` count toward this vaccine's series.
    pub fn counts(&self, code: &str) -> bool {
        self.code == code || self.counts_doses_of.iter().any(|c| c == code)
    }
}

/// Vaccines that are alternatives for the same diseases (5種 vs 4種+Hib, rota 1価 vs 5価, HPV
/// products, 帯状疱疹 生 vs 組換え): a person follows one alternative.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathGroup {
    pub id: String,
    pub alternatives: Vec<Vec<String>>,
    /// Whether switching to another alternative after starting one is reported.
    pub exclusive: bool,
    pub wording: String,
    pub source: String,
    #[serde(default = "yes")]
    pub verified: bool,
}

/// Which vaccines a cross-vaccine interval rule constrains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KindSet {
    InjectableLive,
    /// Injectable or oral live.
    Live,
    Inactivated,
    Any,
}

impl KindSet {
    pub fn contains(&self, kind: VaccineKind) -> bool {
        match self {
            KindSet::InjectableLive => kind == VaccineKind::InjectableLive,
            KindSet::Live => kind != VaccineKind::Inactivated,
            KindSet::Inactivated => kind == VaccineKind::Inactivated,
            KindSet::Any => true,
        }
    }
}

/// A minimum interval between doses of *different* vaccines, in force for later doses given
/// between `valid_from` and `valid_to`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrossRule {
    pub id: String,
    #[serde(default)]
    pub valid_from: Option<Day>,
    #[serde(default)]
    pub valid_to: Option<Day>,
    pub earlier: KindSet,
    pub later: KindSet,
    pub days: u32,
    pub wording: String,
    pub source: String,
    #[serde(default = "yes")]
    pub verified: bool,
}

/// Extra series a municipality funds on its own for an existing vaccine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddSeries {
    pub vaccine: String,
    pub series: Series,
}

/// One municipality's additions and season dates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MunicipalityOverride {
    pub municipality: String,
    pub version: String,
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub example: bool,
    /// Season per vaccine code, replacing the default season of its seasonal series.
    #[serde(default)]
    pub seasons: BTreeMap<String, Season>,
    #[serde(default)]
    pub add_series: Vec<AddSeries>,
    /// Vaccines the municipality funds that have no national rule here.
    #[serde(default)]
    pub add_vaccines: Vec<Vaccine>,
    pub source: String,
    #[serde(default = "yes")]
    pub verified: bool,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum RulesFile {
    Schedule {
        id: String,
        version: String,
        description: String,
        #[serde(default)]
        vaccines: Vec<Vaccine>,
        #[serde(default)]
        path_groups: Vec<PathGroup>,
        #[serde(default)]
        cross_vaccine_rules: Vec<CrossRule>,
    },
    Municipality(MunicipalityOverride),
}

/// Every rule: vaccines in file order, alternatives, cross-vaccine rules, municipal overrides.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    files: Vec<FileInfo>,
    vaccines: Vec<Vaccine>,
    path_groups: Vec<PathGroup>,
    cross_rules: Vec<CrossRule>,
    municipalities: BTreeMap<String, MunicipalityOverride>,
    /// Each overriding municipality's vaccines with its overrides applied, computed once at load
    /// (every dose check needs them, and they never change afterwards).
    effective: BTreeMap<String, Vec<Vaccine>>,
}

/// Which rules file a rule set was built from, for audit and the docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub file: String,
    pub id: String,
    pub version: String,
    pub description: String,
}

static EMBEDDED: OnceLock<Result<RuleSet, String>> = OnceLock::new();

impl RuleSet {
    /// The rules embedded from `profiles/jp/vaccination/`, parsed once.
    pub fn embedded() -> Result<&'static RuleSet, RulesError> {
        EMBEDDED
            .get_or_init(|| {
                Self::from_files(profiles::JP_VACCINATION.iter().map(|(n, t)| (*n, *t)))
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|message| RulesError::Invalid {
                file: "profiles/jp/vaccination".to_owned(),
                message: message.clone(),
            })
    }

    /// The embedded rules plus `extra` `(file name, contents)` files, applied in order: a
    /// vaccine, path group or cross-vaccine rule with an existing code/id replaces it; a
    /// municipality file replaces the one for the same code.
    pub fn load(extra: &[(String, String)]) -> Result<RuleSet, RulesError> {
        Self::from_files(
            profiles::JP_VACCINATION
                .iter()
                .map(|(n, t)| (*n, *t))
                .chain(extra.iter().map(|(n, t)| (n.as_str(), t.as_str()))),
        )
    }

    /// Only the given files (no embedded data); for tests and tools.
    pub fn from_files<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<RuleSet, RulesError> {
        let mut set = RuleSet::default();
        for (name, text) in files {
            let parsed: RulesFile =
                serde_json::from_str(text).map_err(|source| RulesError::Json {
                    file: name.to_owned(),
                    source,
                })?;
            let invalid = |message: String| RulesError::Invalid {
                file: name.to_owned(),
                message,
            };
            match parsed {
                RulesFile::Schedule {
                    id,
                    version,
                    description,
                    vaccines,
                    path_groups,
                    cross_vaccine_rules,
                } => {
                    if id.is_empty() || version.is_empty() {
                        return Err(invalid(
                            "a schedule file needs a non-empty id and version".to_owned(),
                        ));
                    }
                    set.files.push(FileInfo {
                        file: name.to_owned(),
                        id,
                        version,
                        description,
                    });
                    for vaccine in vaccines {
                        check_vaccine(&vaccine).map_err(invalid)?;
                        replace_or_push(&mut set.vaccines, vaccine, |v| v.code.clone());
                    }
                    for group in path_groups {
                        replace_or_push(&mut set.path_groups, group, |g| g.id.clone());
                    }
                    for rule in cross_vaccine_rules {
                        replace_or_push(&mut set.cross_rules, rule, |r| r.id.clone());
                    }
                }
                RulesFile::Municipality(over) => {
                    if over.municipality.len() != 6
                        || !over.municipality.bytes().all(|b| b.is_ascii_digit())
                    {
                        return Err(invalid(format!(
                            "municipality code {:?} is not 6 digits (全国地方公共団体コード)",
                            over.municipality
                        )));
                    }
                    for vaccine in &over.add_vaccines {
                        check_vaccine(vaccine).map_err(invalid)?;
                    }
                    for add in &over.add_series {
                        check_series(&add.series, &add.vaccine).map_err(invalid)?;
                    }
                    set.files.push(FileInfo {
                        file: name.to_owned(),
                        id: format!("municipality-{}", over.municipality),
                        version: over.version.clone(),
                        description: over.description.clone(),
                    });
                    set.municipalities.insert(over.municipality.clone(), over);
                }
            }
        }
        set.check_references()
            .map_err(|message| RulesError::Invalid {
                file: "(rule set)".to_owned(),
                message,
            })?;
        set.effective = set
            .municipalities
            .values()
            .map(|over| (over.municipality.clone(), set.apply_override(over)))
            .collect();
        Ok(set)
    }

    fn check_references(&self) -> Result<(), String> {
        for group in &self.path_groups {
            for code in group.alternatives.iter().flatten() {
                if self.vaccine(code).is_none() {
                    return Err(format!(
                        "path group {:?} names unknown vaccine {code:?}",
                        group.id
                    ));
                }
            }
        }
        for over in self.municipalities.values() {
            for add in &over.add_series {
                if self.vaccine(&add.vaccine).is_none() {
                    return Err(format!(
                        "municipality {} adds a series to unknown vaccine {:?}",
                        over.municipality, add.vaccine
                    ));
                }
            }
        }
        Ok(())
    }

    /// The files this rule set was built from, in load order.
    pub fn files(&self) -> &[FileInfo] {
        &self.files
    }

    pub fn vaccine(&self, code: &str) -> Option<&Vaccine> {
        self.vaccines.iter().find(|v| v.code == code)
    }

    /// Every vaccine, in file order.
    pub fn vaccines(&self) -> &[Vaccine] {
        &self.vaccines
    }

    pub fn path_groups(&self) -> &[PathGroup] {
        &self.path_groups
    }

    pub fn cross_rules(&self) -> &[CrossRule] {
        &self.cross_rules
    }

    pub fn municipality(&self, code: &str) -> Option<&MunicipalityOverride> {
        self.municipalities.get(code)
    }

    /// The vaccines as they apply to residents of `municipality`: national rules with the
    /// municipality's seasons and extra series, plus its extra vaccines.
    pub fn vaccines_for(&self, municipality: Option<&str>) -> &[Vaccine] {
        municipality
            .and_then(|m| self.effective.get(m))
            .map_or(&self.vaccines, Vec::as_slice)
    }

    fn apply_override(&self, over: &MunicipalityOverride) -> Vec<Vaccine> {
        let mut out = self.vaccines.clone();
        for vaccine in &mut out {
            if let Some(season) = over.seasons.get(&vaccine.code) {
                for series in vaccine
                    .variants
                    .iter_mut()
                    .flat_map(|v| v.series.iter_mut())
                {
                    if series.seasonal {
                        series.season = Some(*season);
                    }
                }
            }
            for add in over.add_series.iter().filter(|a| a.vaccine == vaccine.code) {
                for variant in &mut vaccine.variants {
                    variant.series.push(add.series.clone());
                }
            }
        }
        for extra in &over.add_vaccines {
            replace_or_push(&mut out, extra.clone(), |v| v.code.clone());
        }
        out
    }
}

fn replace_or_push<T>(items: &mut Vec<T>, item: T, key: impl Fn(&T) -> String) {
    let k = key(&item);
    match items.iter_mut().find(|existing| key(existing) == k) {
        Some(slot) => *slot = item,
        None => items.push(item),
    }
}

fn check_vaccine(vaccine: &Vaccine) -> Result<(), String> {
    if vaccine.variants.is_empty() {
        return Err(format!("vaccine {:?} has no variants", vaccine.code));
    }
    for variant in &vaccine.variants {
        if variant.series.is_empty() {
            return Err(format!(
                "vaccine {:?} variant {:?} has no series",
                vaccine.code, variant.id
            ));
        }
        let total: usize = variant.series.iter().map(|s| s.doses.len()).sum();
        for series in &variant.series {
            check_series(series, &vaccine.code)?;
            if series.windows.is_none() && vaccine.windows.is_empty() {
                return Err(format!(
                    "vaccine {:?} series {:?} has no windows and the vaccine has none either",
                    vaccine.code, series.id
                ));
            }
            for dose in &series.doses {
                let refs = dose
                    .min_intervals
                    .iter()
                    .chain(dose.max_interval.iter())
                    .map(|i| i.after)
                    .chain(dose.recommended.iter().filter_map(|r| r.after));
                for r in refs {
                    if let DoseRef::Dose(n) = r
                        && n as usize > total
                    {
                        return Err(format!(
                            "vaccine {:?} variant {:?}: interval after dose {n}, but the variant has {total} doses",
                            vaccine.code, variant.id
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

fn check_series(series: &Series, code: &str) -> Result<(), String> {
    if series.doses.is_empty() {
        return Err(format!(
            "vaccine {code:?} series {:?} has no doses",
            series.id
        ));
    }
    if series.seasonal && series.doses.len() != 1 {
        return Err(format!(
            "vaccine {code:?} seasonal series {:?} must have exactly one dose",
            series.id
        ));
    }
    if series.seasonal && series.season.is_none() {
        return Err(format!(
            "vaccine {code:?} seasonal series {:?} has no season",
            series.id
        ));
    }
    Ok(())
}
