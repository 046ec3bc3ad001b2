//! The rules engine: which dose of which vaccine a person may have when, and what is wrong with
//! a given dose, computed from the birth date, the dose history and the rule data.
//!
//! Doses of a vaccine are matched to the dose positions ("slots") of its series in date order;
//! the rule data says which earlier doses count (`counts_doses_of`), which start-age variant
//! applies, and when a position is skipped. docs/vaccination-rules.md describes the semantics.

use time::Date;

use crate::rules::{
    CrossRule, Dose, DoseRef, PathGroup, RuleSet, Series, SexRule, Vaccine, Variant, Window,
};

/// A person's sex as recorded (HPV is routine for females only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sex {
    Male,
    Female,
    Other,
}

/// The person whose doses are checked or scheduled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub birth_date: Date,
    pub sex: Option<Sex>,
    /// The 6-digit 全国地方公共団体コード of the municipality of residence.
    pub municipality: Option<String>,
}

/// One dose given (or, for `check_dose`, proposed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoseRecord {
    pub id: Option<String>,
    /// A code of the vaccine-type CodeSystem, e.g. `dpt-ipv-hib`.
    pub vaccine: String,
    pub product: Option<String>,
    pub date: Date,
    /// The dose number the record claims (何回目), if any.
    pub dose_number: Option<u32>,
}

/// A person's schedule as of a day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub items: Vec<ScheduleItem>,
}

/// One dose position of a vaccine's series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleItem {
    pub vaccine: String,
    pub vaccine_display: String,
    pub series: String,
    /// The position within the vaccine's applicable variant, 1-based.
    pub dose_number: u32,
    pub status: DoseStatus,
    pub given: Option<Date>,
    pub earliest: Option<Date>,
    pub recommended_from: Option<Date>,
    pub recommended_to: Option<Date>,
    /// The last publicly funded day.
    pub latest: Option<Date>,
    pub note: Option<String>,
    pub rule_id: String,
    pub source: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoseStatus {
    Complete,
    /// Possible now, within the standard period (or there is none).
    Due,
    /// Past the standard period, still publicly funded.
    Overdue,
    /// Not yet possible.
    Upcoming,
    /// No public funding: window passed, wrong sex or cohort, or skipped by rule.
    NotEligible,
}

/// Something wrong with a proposed dose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule_id: String,
    pub kind: FindingKind,
    pub message: String,
    pub source: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    /// Too young or too old for public funding.
    Age,
    /// Too soon after an earlier dose of the same vaccine (or later than a hard maximum).
    Interval,
    /// The dose number does not fit the history (claimed number, too many doses, same-day duplicate).
    DoseNumber,
    /// Within 27 days of a different injectable live vaccine (from 2020-10-01).
    LiveVaccineInterval,
    /// Before 2020-10-01: within 27 days of a live or 6 days of an inactivated other vaccine.
    CrossVaccineInterval,
    /// Not a routine vaccination for this person on that day (unknown vaccine, sex, cohort,
    /// before the vaccine became routine).
    NotRoutine,
    /// A different alternative from the one the person started with (e.g. 5種混合 after
    /// 4種混合+Hib, a different rotavirus or HPV product).
    SeriesPath,
    /// Outside the season of a seasonal vaccine, or a second dose in one season.
    Season,
}

// ---------------------------------------------------------------------------------------------
// Windows

/// A person's funded period, merged from overlapping windows.
#[derive(Debug, Clone)]
struct Span<'w> {
    first: Date,
    last: Date,
    windows: Vec<&'w Window>,
}

fn window_raw(window: &Window, vaccine: &Vaccine, birth: Date) -> Option<(Date, Date)> {
    let in_cohort = |from: Option<crate::rules::Day>, to: Option<crate::rules::Day>| {
        from.is_none_or(|d| birth >= d.0) && to.is_none_or(|d| birth <= d.0)
    };
    if !in_cohort(window.born_from, window.born_to) {
        return None;
    }
    let mut first = window.from.map_or(birth, |a| a.resolve(birth));
    let mut last = window.to.map_or(Date::MAX, |a| a.resolve(birth));
    for bound in [window.valid_from, vaccine.routine_from]
        .into_iter()
        .flatten()
    {
        first = first.max(bound.0);
    }
    for bound in [window.valid_to, vaccine.routine_to].into_iter().flatten() {
        last = last.min(bound.0);
    }
    (first <= last).then_some((first, last))
}

/// The funded spans for a person from `windows`; `doses` (of the counting group, before the day
/// in question) decide the windows that need a dose in another window.
fn spans<'w>(
    windows: &'w [Window],
    vaccine: &Vaccine,
    birth: Date,
    doses: &[Date],
) -> Vec<Span<'w>> {
    let mut raw: Vec<(Date, Date, &Window)> = Vec::new();
    for window in windows {
        let Some((first, last)) = window_raw(window, vaccine, birth) else {
            continue;
        };
        if let Some(required) = &window.requires_dose_in {
            let had_dose = windows
                .iter()
                .filter(|w| &w.id == required)
                .filter_map(|w| window_raw(w, vaccine, birth))
                .any(|(f, l)| doses.iter().any(|d| f <= *d && *d <= l));
            if !had_dose {
                continue;
            }
        }
        raw.push((first, last, window));
    }
    raw.sort_by_key(|(first, last, _)| (*first, *last));
    let mut out: Vec<Span> = Vec::new();
    for (first, last, window) in raw {
        match out.last_mut() {
            Some(span) if first <= span.last.next_day().unwrap_or(Date::MAX) => {
                span.last = span.last.max(last);
                span.windows.push(window);
            }
            _ => out.push(Span {
                first,
                last,
                windows: vec![window],
            }),
        }
    }
    out
}

fn windows_of<'v>(vaccine: &'v Vaccine, series: &'v Series) -> &'v [Window] {
    series.windows.as_deref().unwrap_or(&vaccine.windows)
}

fn wordings(span: &Span) -> String {
    span.windows
        .iter()
        .map(|w| format!("「{}」", w.wording))
        .collect::<Vec<_>>()
        .join(" / ")
}

// ---------------------------------------------------------------------------------------------
// Slots and assignment

#[derive(Debug, Clone, Copy)]
struct Slot<'v> {
    /// 1-based over the variant.
    number: u32,
    series_index: usize,
    series: &'v Series,
    dose: &'v Dose,
}

fn slots(variant: &Variant) -> Vec<Slot<'_>> {
    let mut out = Vec::new();
    for (series_index, series) in variant.series.iter().enumerate() {
        if series.seasonal {
            continue;
        }
        for dose in &series.doses {
            out.push(Slot {
                number: out.len() as u32 + 1,
                series_index,
                series,
                dose,
            });
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SlotState {
    /// Given on this day; the index into the dose list.
    Given(Date, usize),
    Skipped(String),
    Open,
}

/// A dose of the counting group: day and vaccine code.
#[derive(Debug, Clone)]
struct Given<'a> {
    date: Date,
    code: &'a str,
}

struct Assignment<'v> {
    variant: &'v Variant,
    slots: Vec<Slot<'v>>,
    states: Vec<SlotState>,
    /// Indexes of doses beyond the last position.
    extra: Vec<usize>,
}

fn choose_variant<'v>(
    vaccine: &'v Vaccine,
    birth: Date,
    first: Option<&Given>,
    as_of: Date,
) -> &'v Variant {
    let start = first.map_or(as_of, |g| g.date);
    vaccine
        .variants
        .iter()
        .find(|v| {
            v.start_to.is_none_or(|a| start <= a.resolve(birth))
                && v.first_dose_of.as_ref().is_none_or(|codes| match first {
                    Some(g) => codes.iter().any(|c| c == g.code),
                    None => codes.iter().any(|c| c == &vaccine.code),
                })
        })
        .unwrap_or_else(|| vaccine.variants.last().unwrap_or(&vaccine.variants[0]))
}

fn slot_last(vaccine: &Vaccine, slot: &Slot, birth: Date, doses: &[Date]) -> Option<Date> {
    let windows = spans(windows_of(vaccine, slot.series), vaccine, birth, doses);
    let last = windows.iter().map(|s| s.last).max()?;
    Some(match slot.dose.max_age {
        Some(max) => last.min(max.resolve(birth)),
        None => last,
    })
}

/// Matches doses (sorted by day) to positions; `as_of` decides the positions skipped because
/// their last day has passed when no further dose is known.
fn assign<'v>(vaccine: &'v Vaccine, birth: Date, doses: &[Given], as_of: Date) -> Assignment<'v> {
    let variant = choose_variant(vaccine, birth, doses.first(), as_of);
    let slots = slots(variant);
    let dates: Vec<Date> = doses.iter().map(|g| g.date).collect();
    let mut states: Vec<SlotState> = Vec::with_capacity(slots.len());
    let mut next = 0usize;
    for slot in &slots {
        let given_on = |n: u32| match states.get(n as usize - 1) {
            Some(SlotState::Given(d, _)) => Some(*d),
            _ => None,
        };
        if let Some(rule) =
            slot.dose.skip_if.iter().find(|rule| {
                given_on(rule.dose).is_some_and(|d| d > rule.given_after.resolve(birth))
            })
        {
            states.push(SlotState::Skipped(format!(
                "not given: dose {} was given after {} (「{}」)",
                rule.dose,
                rule.given_after.wording(),
                rule.wording
            )));
            continue;
        }
        let late_day = slot
            .dose
            .max_age
            .filter(|_| slot.dose.skip_when_late)
            .map(|a| a.resolve(birth));
        match doses.get(next) {
            None => match late_day {
                Some(late) if as_of > late => states.push(SlotState::Skipped(format!(
                    "not given: the period for this dose ended on {late} ({}); go on to the next dose",
                    slot.dose.max_age.map(|a| a.wording()).unwrap_or_default()
                ))),
                _ => states.push(SlotState::Open),
            },
            Some(dose) => {
                if let Some(late) = late_day.filter(|late| dose.date > *late) {
                    states.push(SlotState::Skipped(format!(
                        "not given: the period for this dose ended on {late} ({}); the next dose counts as the following one",
                        slot.dose.max_age.map(|a| a.wording()).unwrap_or_default()
                    )));
                    continue;
                }
                let before: Vec<Date> = dates[..next].to_vec();
                let passed = slot_last(vaccine, slot, birth, &before).is_some_and(|last| dose.date > last);
                let later_series_fits = passed
                    && slots.iter().filter(|s| s.series_index > slot.series_index).any(|s| {
                        spans(windows_of(vaccine, s.series), vaccine, birth, &before)
                            .iter()
                            .any(|span| span.first <= dose.date && dose.date <= span.last)
                    });
                if later_series_fits {
                    states.push(SlotState::Skipped(format!(
                        "not given: the {} period had passed when the next dose was given on {}",
                        slot.series.id, dose.date
                    )));
                } else {
                    states.push(SlotState::Given(dose.date, next));
                    next += 1;
                }
            }
        }
    }
    Assignment {
        variant,
        slots,
        states,
        extra: (next..doses.len()).collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Ids, sources

fn slot_rule_id(vaccine: &Vaccine, variant: &Variant, slot: &Slot) -> String {
    format!(
        "{}/{}/{}/{}",
        vaccine.code, variant.id, slot.series.id, slot.number
    )
}

fn slot_source(vaccine: &Vaccine, variant: &Variant, slot: &Slot) -> String {
    slot.dose
        .source
        .clone()
        .or_else(|| slot.series.source.clone())
        .or_else(|| variant.source.clone())
        .unwrap_or_else(|| vaccine.source.clone())
}

fn slot_verified(vaccine: &Vaccine, variant: &Variant, slot: &Slot) -> bool {
    vaccine.verified && variant.verified && slot.series.verified && slot.dose.verified
}

fn sex_fits(vaccine: &Vaccine, person: &Person) -> bool {
    match (vaccine.sex, person.sex) {
        (None, _) | (_, None) => true,
        (Some(SexRule::Female), Some(sex)) => sex == Sex::Female,
        (Some(SexRule::Male), Some(sex)) => sex == Sex::Male,
    }
}

fn cohort_fits(vaccine: &Vaccine, birth: Date) -> bool {
    vaccine.born_from.is_none_or(|d| birth >= d.0) && vaccine.born_to.is_none_or(|d| birth <= d.0)
}

fn cohort_wording(vaccine: &Vaccine) -> String {
    match (vaccine.born_from, vaccine.born_to) {
        (Some(f), Some(t)) => format!("born {} to {}", f.0, t.0),
        (Some(f), None) => format!("born on or after {}", f.0),
        (None, Some(t)) => format!("born on or before {}", t.0),
        (None, None) => String::new(),
    }
}

fn group_of<'r>(rules: &'r RuleSet, code: &str) -> Option<&'r PathGroup> {
    rules
        .path_groups()
        .iter()
        .find(|g| g.alternatives.iter().flatten().any(|c| c == code))
}

/// The alternative the person follows: the one of the latest dose of any member, else the first
/// whose vaccines are all routine on `as_of`.
fn chosen_alternative(
    group: &PathGroup,
    vaccines: &[Vaccine],
    history: &[&DoseRecord],
    as_of: Date,
) -> usize {
    let by_history = history.iter().rev().find_map(|r| {
        group
            .alternatives
            .iter()
            .position(|alt| alt.iter().any(|c| c == &r.vaccine))
    });
    by_history.unwrap_or_else(|| {
        group
            .alternatives
            .iter()
            .position(|alt| {
                alt.iter().all(|code| {
                    vaccines.iter().find(|v| &v.code == code).is_some_and(|v| {
                        v.routine_from.is_none_or(|d| as_of >= d.0)
                            && v.routine_to.is_none_or(|d| as_of <= d.0)
                    })
                })
            })
            .unwrap_or(0)
    })
}

fn sorted_history<'h>(history: &'h [DoseRecord], exclude_id: Option<&str>) -> Vec<&'h DoseRecord> {
    let mut out: Vec<&DoseRecord> = history
        .iter()
        .filter(|r| exclude_id.is_none_or(|id| r.id.as_deref() != Some(id)))
        .collect();
    out.sort_by(|a, b| (a.date, &a.vaccine, &a.id).cmp(&(b.date, &b.vaccine, &b.id)));
    out
}

fn group_doses<'h>(vaccine: &Vaccine, history: &[&'h DoseRecord]) -> Vec<Given<'h>> {
    history
        .iter()
        .filter(|r| vaccine.counts(&r.vaccine))
        .map(|r| Given {
            date: r.date,
            code: r.vaccine.as_str(),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Schedule

/// The schedule for `person` as of `as_of`: per vaccine routine for the person (and per
/// municipal addition), every dose position with its status and dates.
pub fn schedule(rules: &RuleSet, person: &Person, history: &[DoseRecord], as_of: Date) -> Schedule {
    let birth = person.birth_date;
    let vaccines = rules.vaccines_for(person.municipality.as_deref());
    let history = sorted_history(history, None);
    let mut items = Vec::new();
    for vaccine in vaccines {
        if let Some(group) = group_of(rules, &vaccine.code) {
            let chosen = chosen_alternative(group, vaccines, &history, as_of);
            if !group.alternatives[chosen]
                .iter()
                .any(|c| c == &vaccine.code)
            {
                continue;
            }
        }
        let doses = group_doses(vaccine, &history);
        if doses.is_empty() && !relevant(vaccine, birth, as_of) {
            continue;
        }
        let blocked = if !sex_fits(vaccine, person) {
            Some("routine only for females (sex)".to_owned())
        } else if !cohort_fits(vaccine, birth) {
            Some(format!(
                "routine only for people {}",
                cohort_wording(vaccine)
            ))
        } else {
            None
        };
        let sex_unknown = vaccine.sex.is_some() && person.sex.is_none();
        let mut vaccine_items = schedule_vaccine(vaccine, birth, &doses, as_of);
        for item in &mut vaccine_items {
            if let Some(reason) = &blocked
                && item.status != DoseStatus::Complete
            {
                item.status = DoseStatus::NotEligible;
                item.note = Some(join_note(item.note.take(), reason));
            }
            if sex_unknown {
                item.note = Some(join_note(
                    item.note.take(),
                    "routine only for females; sex not recorded",
                ));
            }
        }
        items.extend(vaccine_items);
    }
    Schedule { items }
}

fn join_note(note: Option<String>, extra: &str) -> String {
    match note {
        Some(n) => format!("{n}; {extra}"),
        None => extra.to_owned(),
    }
}

/// Whether a vaccine belongs on the schedule without any dose: one of its age windows for the
/// person's birth cohort has not yet ended and starts within 20 years (so a newborn sees the
/// childhood schedule, not B類), or it is an A類 vaccine and the person is under 20 (so missed
/// childhood doses stay visible as not eligible).
fn relevant(vaccine: &Vaccine, birth: Date, as_of: Date) -> bool {
    if vaccine.class == crate::rules::Class::A && as_of < crate::calendar::age_reached(birth, 20) {
        return true;
    }
    let horizon = crate::calendar::after_months(as_of, 240);
    vaccine
        .windows
        .iter()
        .chain(
            vaccine
                .variants
                .iter()
                .flat_map(|v| v.series.iter())
                .flat_map(|s| s.windows.iter().flatten()),
        )
        .filter(|w| {
            w.born_from.is_none_or(|d| birth >= d.0) && w.born_to.is_none_or(|d| birth <= d.0)
        })
        .any(|w| {
            let first = w.from.map_or(birth, |a| a.resolve(birth));
            let last = w.to.map_or(Date::MAX, |a| a.resolve(birth));
            last >= as_of && first <= horizon
        })
}

fn schedule_vaccine(
    vaccine: &Vaccine,
    birth: Date,
    doses: &[Given],
    as_of: Date,
) -> Vec<ScheduleItem> {
    let assignment = assign(vaccine, birth, doses, as_of);
    let dates: Vec<Date> = doses.iter().map(|g| g.date).collect();
    let variant = assignment.variant;
    let mut items = Vec::new();
    // Projected day of each position: the given day, or the earliest possible day not before today.
    let mut projected: Vec<Option<Date>> = Vec::new();
    for (slot, state) in assignment.slots.iter().zip(&assignment.states) {
        let mut item = ScheduleItem {
            vaccine: vaccine.code.clone(),
            vaccine_display: vaccine.display.clone(),
            series: slot.series.id.clone(),
            dose_number: slot.number,
            status: DoseStatus::Upcoming,
            given: None,
            earliest: None,
            recommended_from: None,
            recommended_to: None,
            latest: None,
            note: slot.dose.note.clone(),
            rule_id: slot_rule_id(vaccine, variant, slot),
            source: slot_source(vaccine, variant, slot),
        };
        if !slot_verified(vaccine, variant, slot) {
            item.note = Some(join_note(
                item.note.take(),
                "rule not verified against a primary source",
            ));
        }
        match state {
            SlotState::Given(date, _) => {
                item.status = DoseStatus::Complete;
                item.given = Some(*date);
                projected.push(Some(*date));
            }
            SlotState::Skipped(reason) => {
                item.status = DoseStatus::NotEligible;
                item.note = Some(join_note(item.note.take(), reason));
                projected.push(None);
            }
            SlotState::Open => {
                let reference = |r: DoseRef, projected: &[Option<Date>]| match r {
                    DoseRef::Previous => projected.iter().rev().flatten().next().copied(),
                    DoseRef::Dose(n) => projected.get(n as usize - 1).copied().flatten(),
                };
                let mut earliest = slot.dose.min_age.map_or(birth, |a| a.resolve(birth));
                for interval in &slot.dose.min_intervals {
                    if let Some(d) = reference(interval.after, &projected) {
                        earliest = earliest.max(interval.length.at_least_after(d));
                    }
                }
                let max_day = slot.dose.max_age.map(|a| a.resolve(birth));
                let hard_max = slot
                    .dose
                    .max_interval
                    .as_ref()
                    .filter(|i| i.hard)
                    .and_then(|i| {
                        reference(i.after, &projected).map(|d| i.length.at_most_after(d))
                    });
                let funded = spans(windows_of(vaccine, slot.series), vaccine, birth, &dates);
                let pivot = earliest.max(as_of);
                let span = funded
                    .iter()
                    .find(|s| s.last >= pivot)
                    .or_else(|| funded.iter().rev().find(|s| s.last >= earliest))
                    .or(funded.last());
                match span {
                    None => {
                        item.status = DoseStatus::NotEligible;
                        item.note = Some(join_note(
                            item.note.take(),
                            "no publicly funded period for this person",
                        ));
                        projected.push(None);
                    }
                    Some(span) => {
                        let earliest = earliest.max(span.first);
                        let latest = [Some(span.last), max_day, hard_max]
                            .into_iter()
                            .flatten()
                            .min()
                            .unwrap_or(span.last);
                        item.earliest = Some(earliest);
                        item.latest = Some(latest);
                        if let Some(rec) = &slot.dose.recommended {
                            let base = rec.after.and_then(|r| reference(r, &projected));
                            item.recommended_from = match (rec.from, rec.interval_from, base) {
                                (Some(a), _, _) => Some(a.resolve(birth)),
                                (None, Some(len), Some(b)) => Some(len.at_least_after(b)),
                                _ => None,
                            }
                            .map(|d| d.max(earliest));
                            item.recommended_to = match (rec.to, rec.interval_to, base) {
                                (Some(a), _, _) => Some(a.resolve(birth)),
                                (None, Some(len), Some(b)) => Some(len.at_most_after(b)),
                                _ => None,
                            };
                        }
                        item.status = if earliest > latest {
                            item.note = Some(join_note(
                                item.note.take(),
                                "cannot be given within the publicly funded period any more",
                            ));
                            DoseStatus::NotEligible
                        } else if as_of > latest {
                            item.note = Some(join_note(
                                item.note.take(),
                                &format!(
                                    "publicly funded period ended on {latest} ({})",
                                    wordings(span)
                                ),
                            ));
                            DoseStatus::NotEligible
                        } else if as_of < earliest {
                            DoseStatus::Upcoming
                        } else if item.recommended_to.is_some_and(|to| as_of > to) {
                            DoseStatus::Overdue
                        } else {
                            DoseStatus::Due
                        };
                        projected.push(
                            (earliest <= latest && as_of <= latest).then_some(earliest.max(as_of)),
                        );
                    }
                }
            }
        }
        items.push(item);
    }
    if let (Some(first_extra), Some(last)) = (assignment.extra.first(), items.last_mut()) {
        last.note = Some(join_note(
            last.note.take(),
            &format!(
                "{} further dose(s) recorded from {} beyond the routine series",
                assignment.extra.len(),
                doses[*first_extra].date
            ),
        ));
    }
    for series in variant.series.iter().filter(|s| s.seasonal) {
        items.push(schedule_seasonal(
            vaccine,
            variant,
            series,
            birth,
            doses,
            &dates,
            as_of,
            items.len() as u32 + 1,
        ));
    }
    items
}

#[allow(
    clippy::too_many_arguments,
    reason = "one internal helper; a struct would only rename them"
)]
fn schedule_seasonal(
    vaccine: &Vaccine,
    variant: &Variant,
    series: &Series,
    birth: Date,
    doses: &[Given],
    dates: &[Date],
    as_of: Date,
    number: u32,
) -> ScheduleItem {
    let dose = &series.doses[0];
    let slot = Slot {
        number,
        series_index: 0,
        series,
        dose,
    };
    let mut item = ScheduleItem {
        vaccine: vaccine.code.clone(),
        vaccine_display: vaccine.display.clone(),
        series: series.id.clone(),
        dose_number: 1,
        status: DoseStatus::NotEligible,
        given: None,
        earliest: None,
        recommended_from: None,
        recommended_to: None,
        latest: None,
        note: dose.note.clone(),
        rule_id: slot_rule_id(vaccine, variant, &slot),
        source: slot_source(vaccine, variant, &slot),
    };
    if !slot_verified(vaccine, variant, &slot) {
        item.note = Some(join_note(
            item.note.take(),
            "rule not verified against a primary source",
        ));
    }
    let Some(season) = series.season else {
        return item;
    };
    let funded = spans(windows_of(vaccine, series), vaccine, birth, dates);
    let min_day = dose.min_age.map(|a| a.resolve(birth));
    // The first season from today's on that overlaps a funded span.
    let mut start = as_of;
    for _ in 0..130 {
        let (first, last) = season.current_or_next(start);
        let overlap = funded.iter().find_map(|span| {
            let f = span.first.max(first).max(min_day.unwrap_or(Date::MIN));
            let l = span.last.min(last);
            (f <= l && l >= as_of).then_some((f, l))
        });
        if let Some((f, l)) = overlap {
            item.earliest = Some(f);
            item.latest = Some(l);
            item.recommended_from = Some(f);
            item.recommended_to = Some(l);
            if let Some(given) = doses.iter().find(|g| first <= g.date && g.date <= last) {
                item.status = DoseStatus::Complete;
                item.given = Some(given.date);
            } else {
                item.status = if as_of < f {
                    DoseStatus::Upcoming
                } else {
                    DoseStatus::Due
                };
            }
            item.note = Some(join_note(
                item.note.take(),
                &format!("season {first} to {last} ({})", season.wording()),
            ));
            return item;
        }
        match last.next_day() {
            Some(next) => start = next,
            None => break,
        }
    }
    item.note = Some(join_note(
        item.note.take(),
        "no publicly funded season ahead",
    ));
    item
}

// ---------------------------------------------------------------------------------------------
// Dose check

/// Everything wrong with `candidate` against the rules, the person and the other doses.
/// `history` may be in any order and may contain the candidate itself (same id), which is ignored.
pub fn check_dose(
    rules: &RuleSet,
    person: &Person,
    history: &[DoseRecord],
    candidate: &DoseRecord,
) -> Vec<Finding> {
    let birth = person.birth_date;
    let day = candidate.date;
    let vaccines = rules.vaccines_for(person.municipality.as_deref());
    let history = sorted_history(history, candidate.id.as_deref());
    let mut findings = Vec::new();

    findings.extend(cross_vaccine_findings(rules, vaccines, &history, candidate));

    let Some(vaccine) = vaccines.iter().find(|v| v.code == candidate.vaccine) else {
        findings.push(Finding {
            rule_id: "unknown-vaccine".to_owned(),
            kind: FindingKind::NotRoutine,
            message: format!(
                "no routine vaccination rule for vaccine type {:?}",
                candidate.vaccine
            ),
            source: "profiles/jp/vaccination".to_owned(),
        });
        return findings;
    };

    let mut routine = true;
    if let Some(from) = vaccine.routine_from.filter(|d| day < d.0) {
        routine = false;
        findings.push(Finding {
            rule_id: format!("{}/routine-period", vaccine.code),
            kind: FindingKind::NotRoutine,
            message: format!(
                "{} became a routine vaccination on {} ({}); a dose on {day} is not routine",
                vaccine.display,
                from.0,
                vaccine.routine_wording.as_deref().unwrap_or("定期接種")
            ),
            source: vaccine.source.clone(),
        });
    }
    if let Some(to) = vaccine.routine_to.filter(|d| day > d.0) {
        routine = false;
        findings.push(Finding {
            rule_id: format!("{}/routine-period", vaccine.code),
            kind: FindingKind::NotRoutine,
            message: format!(
                "{} was a routine vaccination until {}; a dose on {day} is not routine",
                vaccine.display, to.0
            ),
            source: vaccine.source.clone(),
        });
    }
    if !cohort_fits(vaccine, birth) {
        routine = false;
        findings.push(Finding {
            rule_id: format!("{}/cohort", vaccine.code),
            kind: FindingKind::NotRoutine,
            message: format!(
                "{} is routine only for people {}{}; this person was born {birth}",
                vaccine.display,
                cohort_wording(vaccine),
                vaccine
                    .routine_wording
                    .as_deref()
                    .map(|w| format!(" ({w})"))
                    .unwrap_or_default()
            ),
            source: vaccine.source.clone(),
        });
    }
    if !sex_fits(vaccine, person) {
        routine = false;
        findings.push(Finding {
            rule_id: format!("{}/sex", vaccine.code),
            kind: FindingKind::NotRoutine,
            message: format!(
                "{} is a routine vaccination for females only (女子)",
                vaccine.display
            ),
            source: vaccine.source.clone(),
        });
    }

    if let Some(group) = group_of(rules, &vaccine.code) {
        let members: Vec<&DoseRecord> = history
            .iter()
            .copied()
            .filter(|r| {
                r.date <= day && group.alternatives.iter().flatten().any(|c| c == &r.vaccine)
            })
            .collect();
        if group.exclusive && !members.is_empty() {
            let chosen = chosen_alternative(group, vaccines, &members, day);
            let alternative = &group.alternatives[chosen];
            if !alternative.iter().any(|c| vaccine.counts(c)) {
                findings.push(Finding {
                    rule_id: format!("{}/path", group.id),
                    kind: FindingKind::SeriesPath,
                    message: format!(
                        "this person started with {} ({}); {} (「{}」)",
                        alternative.join("+"),
                        members
                            .iter()
                            .map(|r| format!("{} on {}", r.vaccine, r.date))
                            .collect::<Vec<_>>()
                            .join(", "),
                        format_args!("a dose of {} does not continue that series", vaccine.code),
                        group.wording
                    ),
                    source: group.source.clone(),
                });
            }
        }
    }

    let group_history: Vec<&DoseRecord> = history
        .iter()
        .copied()
        .filter(|r| vaccine.counts(&r.vaccine))
        .collect();
    let same_day: Vec<&&DoseRecord> = group_history.iter().filter(|r| r.date == day).collect();
    if !same_day.is_empty() {
        findings.push(Finding {
            rule_id: format!("{}/duplicate", vaccine.code),
            kind: FindingKind::DoseNumber,
            message: format!(
                "another dose of {} is already recorded on {day}",
                same_day[0].vaccine
            ),
            source: vaccine.source.clone(),
        });
    }
    let prior: Vec<&DoseRecord> = group_history
        .iter()
        .copied()
        .filter(|r| r.date < day)
        .collect();

    let seasonal: Vec<&Series> = vaccine
        .variants
        .iter()
        .flat_map(|v| v.series.iter())
        .filter(|s| s.seasonal)
        .collect();
    if !seasonal.is_empty() {
        findings.extend(check_seasonal(
            vaccine,
            &seasonal,
            birth,
            &group_history,
            candidate,
            routine,
        ));
        return findings;
    }

    let mut doses = group_doses(vaccine, &prior);
    doses.push(Given {
        date: day,
        code: candidate.vaccine.as_str(),
    });
    let assignment = assign(vaccine, birth, &doses, day);
    let ordinal = doses.len() as u32;
    let candidate_index = doses.len() - 1;
    let variant = assignment.variant;

    let position = assignment
        .states
        .iter()
        .position(|s| matches!(s, SlotState::Given(_, i) if *i == candidate_index));
    let Some(position) = position else {
        let total = assignment.slots.len();
        findings.push(Finding {
            rule_id: format!("{}/{}/dose-count", vaccine.code, variant.id),
            kind: FindingKind::DoseNumber,
            message: format!(
                "this would be dose {ordinal} of {} but the routine series ({}) has {total} dose{} and {} earlier dose{} already fill{} it",
                vaccine.code,
                variant.wording.as_deref().unwrap_or(&variant.id),
                if total == 1 { "" } else { "s" },
                prior.len(),
                if prior.len() == 1 { "" } else { "s" },
                if prior.len() == 1 { "s" } else { "" },
            ),
            source: variant.source.clone().unwrap_or_else(|| vaccine.source.clone()),
        });
        return findings;
    };
    let slot = assignment.slots[position];
    let rule_id = slot_rule_id(vaccine, variant, &slot);
    let source = slot_source(vaccine, variant, &slot);

    if let Some(claimed) = candidate.dose_number
        && claimed != ordinal
        && claimed != slot.number
    {
        findings.push(Finding {
            rule_id: format!("{rule_id}/dose-number"),
            kind: FindingKind::DoseNumber,
            message: format!(
                "claims dose {claimed} but {} earlier dose{} of {} {} recorded, so this is dose {ordinal}{}",
                prior.len(),
                if prior.len() == 1 { "" } else { "s" },
                vaccine.code,
                if prior.len() == 1 { "is" } else { "are" },
                if slot.number == ordinal { String::new() } else { format!(" (position {} of the series)", slot.number) }
            ),
            source: source.clone(),
        });
    }

    if routine {
        let prior_dates: Vec<Date> = prior.iter().map(|r| r.date).collect();
        let funded = spans(
            windows_of(vaccine, slot.series),
            vaccine,
            birth,
            &prior_dates,
        );
        let inside = funded.iter().any(|s| s.first <= day && day <= s.last);
        if !inside {
            let before = funded.iter().find(|s| day < s.first);
            let after = funded.iter().rev().find(|s| day > s.last);
            let message = match (before, after) {
                (Some(span), None) => format!(
                    "too young for {} {}: publicly funded from {} ({}); no earlier than {}",
                    vaccine.code,
                    slot.series.id,
                    span.first,
                    wordings(span),
                    span.first
                ),
                (_, Some(span)) if before.is_none() => format!(
                    "too old for {} {}: the last publicly funded day was {} ({})",
                    vaccine.code,
                    slot.series.id,
                    span.last,
                    wordings(span)
                ),
                (Some(next), Some(prev)) => format!(
                    "outside the publicly funded periods of {} {}: {} ended on {}, {} starts on {}",
                    vaccine.code,
                    slot.series.id,
                    wordings(prev),
                    prev.last,
                    wordings(next),
                    next.first
                ),
                _ => format!(
                    "{} {} has no publicly funded period for this person",
                    vaccine.code, slot.series.id
                ),
            };
            findings.push(Finding {
                rule_id: format!("{rule_id}/window"),
                kind: FindingKind::Age,
                message,
                source: source.clone(),
            });
        }
        if let Some(min) = slot.dose.min_age {
            let first = min.resolve(birth);
            if day < first {
                findings.push(Finding {
                    rule_id: format!("{rule_id}/min-age"),
                    kind: FindingKind::Age,
                    message: format!(
                        "too young for dose {} ({}): {} is reached on {first}; no earlier than {first}",
                        slot.number,
                        slot.series.id,
                        min.wording()
                    ),
                    source: source.clone(),
                });
            }
        }
        if let Some(max) = slot.dose.max_age {
            let last = max.resolve(birth);
            if day > last {
                findings.push(Finding {
                    rule_id: format!("{rule_id}/max-age"),
                    kind: FindingKind::Age,
                    message: format!(
                        "too old for dose {} ({}): 「{}に至るまで」 ended on {last}",
                        slot.number,
                        slot.series.id,
                        max.wording()
                    ),
                    source: source.clone(),
                });
            }
        }
    }

    let given_at = |r: DoseRef| -> Option<(u32, Date)> {
        match r {
            DoseRef::Previous => assignment.states[..position]
                .iter()
                .enumerate()
                .rev()
                .find_map(|(i, s)| match s {
                    SlotState::Given(d, _) => Some((i as u32 + 1, *d)),
                    _ => None,
                }),
            DoseRef::Dose(n) => match assignment.states.get(n as usize - 1) {
                Some(SlotState::Given(d, _)) if (n as usize - 1) < position => Some((n, *d)),
                _ => None,
            },
        }
    };
    for interval in &slot.dose.min_intervals {
        if let Some((n, earlier)) = given_at(interval.after) {
            let first = interval.length.at_least_after(earlier);
            if day < first {
                findings.push(Finding {
                    rule_id: format!("{rule_id}/interval-after-{n}"),
                    kind: FindingKind::Interval,
                    message: format!(
                        "{}以上 after dose {n} ({earlier}){}: no earlier than {first}",
                        interval.length.wording(),
                        interval
                            .wording
                            .as_deref()
                            .map(|w| format!(" 「{w}」"))
                            .unwrap_or_default()
                    ),
                    source: source.clone(),
                });
            }
        }
    }
    if let Some(interval) = slot.dose.max_interval.as_ref().filter(|i| i.hard)
        && let Some((n, earlier)) = given_at(interval.after)
    {
        let last = interval.length.at_most_after(earlier);
        if day > last {
            findings.push(Finding {
                rule_id: format!("{rule_id}/max-interval-after-{n}"),
                kind: FindingKind::Interval,
                message: format!(
                    "more than {} after dose {n} ({earlier}){}: no later than {last}",
                    interval.length.wording(),
                    interval
                        .wording
                        .as_deref()
                        .map(|w| format!(" 「{w}」"))
                        .unwrap_or_default()
                ),
                source: source.clone(),
            });
        }
    }
    findings
}

fn check_seasonal(
    vaccine: &Vaccine,
    seasonal: &[&Series],
    birth: Date,
    group_history: &[&DoseRecord],
    candidate: &DoseRecord,
    routine: bool,
) -> Vec<Finding> {
    let day = candidate.date;
    let mut findings = Vec::new();
    let prior: Vec<Date> = group_history
        .iter()
        .map(|r| r.date)
        .filter(|d| *d < day)
        .collect();
    let fitting = seasonal.iter().find(|s| {
        spans(windows_of(vaccine, s), vaccine, birth, &prior)
            .iter()
            .any(|span| span.first <= day && day <= span.last)
    });
    let Some(series) = fitting else {
        if routine {
            let wording = seasonal
                .iter()
                .flat_map(|s| windows_of(vaccine, s).iter())
                .map(|w| format!("「{}」", w.wording))
                .collect::<Vec<_>>()
                .join(" / ");
            let ages = seasonal
                .iter()
                .flat_map(|s| spans(windows_of(vaccine, s), vaccine, birth, &prior))
                .map(|s| {
                    if s.last == Date::MAX {
                        format!("from {}", s.first)
                    } else {
                        format!("{} to {}", s.first, s.last)
                    }
                })
                .collect::<Vec<_>>()
                .join(", ");
            findings.push(Finding {
                rule_id: format!("{}/window", vaccine.code),
                kind: FindingKind::Age,
                message: format!(
                    "outside the publicly funded ages for {} ({wording}): for this person {}",
                    vaccine.code,
                    if ages.is_empty() {
                        "none".to_owned()
                    } else {
                        ages
                    }
                ),
                source: vaccine.source.clone(),
            });
        }
        return findings;
    };
    let rule_id = format!("{}/{}", vaccine.code, series.id);
    let source = series
        .source
        .clone()
        .unwrap_or_else(|| vaccine.source.clone());
    if let Some(min) = series.doses[0].min_age
        && day < min.resolve(birth)
    {
        findings.push(Finding {
            rule_id: format!("{rule_id}/min-age"),
            kind: FindingKind::Age,
            message: format!(
                "too young: {} is reached on {}",
                min.wording(),
                min.resolve(birth)
            ),
            source: source.clone(),
        });
    }
    let Some(season) = series.season else {
        return findings;
    };
    match season.containing(day) {
        None => {
            let (first, last) = season.current_or_next(day);
            findings.push(Finding {
                rule_id: format!("{rule_id}/season"),
                kind: FindingKind::Season,
                message: format!(
                    "{day} is outside the {} season ({}); the next season runs {first} to {last}",
                    vaccine.code,
                    season.wording()
                ),
                source: source.clone(),
            });
        }
        Some((first, last)) => {
            if let Some(other) = group_history
                .iter()
                .find(|r| first <= r.date && r.date <= last && r.date != day)
            {
                findings.push(Finding {
                    rule_id: format!("{rule_id}/once-per-season"),
                    kind: FindingKind::Season,
                    message: format!(
                        "one publicly funded dose per season: a dose of {} was already given on {} in the season {first} to {last}",
                        other.vaccine, other.date
                    ),
                    source,
                });
            }
        }
    }
    findings
}

/// The cross-vaccine interval rules in force on the later dose's day, in both directions
/// (the candidate after an earlier dose, and a recorded later dose after the candidate).
fn cross_vaccine_findings(
    rules: &RuleSet,
    vaccines: &[Vaccine],
    history: &[&DoseRecord],
    candidate: &DoseRecord,
) -> Vec<Finding> {
    let kind_of = |code: &str| vaccines.iter().find(|v| v.code == code).map(|v| v.kind);
    let same_vaccine = |a: &str, b: &str| {
        a == b
            || vaccines
                .iter()
                .find(|v| v.code == a)
                .is_some_and(|v| v.counts(b))
            || vaccines
                .iter()
                .find(|v| v.code == b)
                .is_some_and(|v| v.counts(a))
    };
    let Some(candidate_kind) = kind_of(&candidate.vaccine) else {
        return Vec::new();
    };
    let mut findings = Vec::new();
    for other in history
        .iter()
        .filter(|r| r.date != candidate.date && !same_vaccine(&r.vaccine, &candidate.vaccine))
    {
        let Some(other_kind) = kind_of(&other.vaccine) else {
            continue;
        };
        let (earlier, earlier_kind, later, later_kind) = if other.date < candidate.date {
            (*other, other_kind, candidate, candidate_kind)
        } else {
            (candidate, candidate_kind, *other, other_kind)
        };
        for rule in rules
            .cross_rules()
            .iter()
            .filter(|r| applies(r, later.date))
        {
            if !(rule.earlier.contains(earlier_kind) && rule.later.contains(later_kind)) {
                continue;
            }
            let first = crate::calendar::after_days(earlier.date, rule.days);
            if later.date < first {
                let injectable = rule.earlier == crate::rules::KindSet::InjectableLive
                    && rule.later == crate::rules::KindSet::InjectableLive;
                let message = if std::ptr::eq(later, candidate) {
                    format!(
                        "{}日以上 after {} on {} (「{}」): no earlier than {first}",
                        rule.days, earlier.vaccine, earlier.date, rule.wording
                    )
                } else {
                    format!(
                        "{}日以上 before the recorded {} on {} (「{}」): {} on {} would need that dose no earlier than {first}",
                        rule.days,
                        later.vaccine,
                        later.date,
                        rule.wording,
                        candidate.vaccine,
                        candidate.date
                    )
                };
                findings.push(Finding {
                    rule_id: rule.id.clone(),
                    kind: if injectable {
                        FindingKind::LiveVaccineInterval
                    } else {
                        FindingKind::CrossVaccineInterval
                    },
                    message,
                    source: rule.source.clone(),
                });
            }
        }
    }
    findings
}

fn applies(rule: &CrossRule, day: Date) -> bool {
    rule.valid_from.is_none_or(|d| day >= d.0) && rule.valid_to.is_none_or(|d| day <= d.0)
}
