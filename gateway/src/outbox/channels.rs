//! The collected channels (docs/routing.md, "Municipal files" and "Weekly digests"): deliveries
//! that travel together in one parcel per recipient instead of one request per record.
//!
//! - `municipal-file`: once their window (`routing.municipal_file_interval_secs`, counted from
//!   midnight in Japan) has ended, a municipality's due Tasks become one CSV file in its
//!   municipal layout (and a second file listing deletions), POSTed to the municipality's file
//!   endpoint or kept for it to pull from `/routing/v1/files`.
//! - `weekly-digest`: once an ISO week (Japan time) has ended, a district team's Tasks of that
//!   week become one FHIR Bundle, POSTed to its rest-hook endpoint or kept for it to pull from
//!   `/routing/v1/digests`.
//!
//! A correction that changes a municipal row's key also removes the row the municipality held,
//! with a delivery of its own in the deletions file.
//!
//! A parcel is stored as a `Binary` in the same commit that writes its id into every carried
//! Task's `output`, so a record is in exactly one parcel, and building again never duplicates.
//! Consent is re-checked per record when the parcel is built; a parcel never changes after.
//! The Tasks of a parcel then move through the routing state machine together.

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use municipal::ExportRecord;
use routing::IsoWeek;

use super::*;

/// Parcels are stored as `Binary` resources.
const PARCEL_TYPE: &str = "Binary";
/// `Binary.meta.tag`: what the parcel holds (`records`, `deletions`, `digest`).
pub const PARCEL_KIND_SYSTEM: &str = "https://musubi.example.org/fhir/CodeSystem/routing-parcel";
/// `Task.meta.tag`: the parcel that carries the delivery, so Tasks not yet in one are one search.
pub const PARCEL_TAG_SYSTEM: &str = "https://musubi.example.org/fhir/CodeSystem/routing-parcel-id";
/// `Binary.meta.tag`: the ISO week (`2026-W48`) a weekly digest covers.
pub const WEEK_SYSTEM: &str = "https://musubi.example.org/fhir/CodeSystem/iso-week";
/// `Bundle.identifier` of a weekly digest.
pub const DIGEST_ID_SYSTEM: &str = "https://musubi.example.org/fhir/IdSystem/weekly-digest";
/// Sent with every municipal file, so the municipality can drop a file it already has.
pub const FILE_ID_HEADER: &str = "x-musubi-file-id";
/// Sent with every municipal file: `records` or `deletions`.
pub const FILE_KIND_HEADER: &str = "x-musubi-file-kind";
/// The layout of municipal files. A municipality's differences come from its override file
/// (docs/municipal.md), so one layout name serves every municipality.
const FILE_LAYOUT: &str = "musubi-vaccination";
/// The event of a delivery that removes a row a correction left behind (its key changed).
const SUPERSEDED: &str = "superseded";
/// The channels whose deliveries travel in parcels.
const COLLECTED: [Channel; 2] = [Channel::MunicipalFile, Channel::WeeklyDigest];

/// What a parcel holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    /// Municipal file rows of created and corrected records.
    Records,
    /// Municipal file rows of deleted records, as they were last stored.
    Deletions,
    /// A weekly digest Bundle.
    Digest,
}

impl Kind {
    fn code(self) -> &'static str {
        match self {
            Kind::Records => "records",
            Kind::Deletions => "deletions",
            Kind::Digest => "digest",
        }
    }

    fn parse(code: &str) -> Option<Kind> {
        [Kind::Records, Kind::Deletions, Kind::Digest]
            .into_iter()
            .find(|k| k.code() == code)
    }
}

/// The Task output naming a delivery's parcel.
fn parcel_output(channel: Channel) -> &'static str {
    match channel {
        Channel::WeeklyDigest => "digest",
        _ => "file",
    }
}

/// One payload for one recipient.
#[derive(Debug, Clone, PartialEq)]
struct Parcel {
    id: String,
    channel: Channel,
    recipient: String,
    kind: Kind,
    week: Option<IsoWeek>,
    content_type: String,
    bytes: Vec<u8>,
}

impl Parcel {
    fn to_binary(&self) -> Value {
        let mut tags = vec![
            json!({"system": RECIPIENT_TAG_SYSTEM, "code": self.recipient}),
            json!({"system": CHANNEL_SYSTEM, "code": self.channel.code()}),
            json!({"system": PARCEL_KIND_SYSTEM, "code": self.kind.code()}),
        ];
        if let Some(week) = self.week {
            tags.push(json!({"system": WEEK_SYSTEM, "code": week.to_string()}));
        }
        json!({
            "resourceType": PARCEL_TYPE,
            "id": self.id,
            "meta": {"tag": tags},
            "contentType": self.content_type,
            "data": base64::engine::general_purpose::STANDARD.encode(&self.bytes),
        })
    }

    fn from_binary(binary: &Value) -> Result<Parcel, String> {
        let tag = |system: &str| {
            binary
                .pointer("/meta/tag")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|t| t.get("system").and_then(Value::as_str) == Some(system))
                .and_then(|t| t.get("code").and_then(Value::as_str))
        };
        let text = |name: &str| {
            binary
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("the parcel has no {name}"))
        };
        let channel = tag(CHANNEL_SYSTEM)
            .and_then(|code| Channel::ALL.into_iter().find(|c| c.code() == code))
            .ok_or("the parcel names no channel")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text("data")?)
            .map_err(|e| format!("the parcel's data is not base64: {e}"))?;
        Ok(Parcel {
            id: text("id")?.to_owned(),
            channel,
            recipient: tag(RECIPIENT_TAG_SYSTEM)
                .ok_or("the parcel names no recipient")?
                .to_owned(),
            kind: tag(PARCEL_KIND_SYSTEM)
                .and_then(Kind::parse)
                .ok_or("the parcel names no kind")?,
            week: tag(WEEK_SYSTEM).and_then(|w| IsoWeek::parse(w).ok()),
            content_type: text("contentType")?.to_owned(),
            bytes,
        })
    }

    /// The parcel as a listing entry: the Binary without its data.
    fn summary(&self) -> Value {
        let mut binary = self.to_binary();
        if let Some(object) = binary.as_object_mut() {
            object.shift_remove("data");
        }
        binary
    }
}

/// An outbox Task of a collected channel, as the worker holds it.
#[derive(Debug, Clone)]
struct Queued {
    version: u64,
    task: Value,
    info: Info,
    delivery: DeliveryState,
    /// The parcel that carries it, once it is in one.
    parcel: Option<String>,
    /// Made by this gathering (a superseded row's deletion): stored with its parcel.
    new: bool,
}

impl Queued {
    /// When the delivery was queued (`Task.authoredOn`).
    fn queued_at(&self) -> Option<OffsetDateTime> {
        let authored = self.task.get("authoredOn").and_then(Value::as_str)?;
        OffsetDateTime::parse(authored, &Rfc3339).ok()
    }

    fn week(&self) -> Option<IsoWeek> {
        self.queued_at().map(IsoWeek::of)
    }

    /// Whether the worker gathers it into a parcel at `now`: a digest once its week has ended,
    /// a file once its window has. A Task without a queue time is gathered at once.
    fn is_gathered(&self, channel: Channel, now: OffsetDateTime, file_interval: Duration) -> bool {
        match channel {
            Channel::WeeklyDigest => self.week().is_none_or(|w| w.has_ended(now)),
            _ => self
                .queued_at()
                .is_none_or(|t| routing::file_gathering_time(t, file_interval) <= now),
        }
    }

    /// The delivery that removes `version`'s row, which the municipality holds under a key this
    /// correction changed: a new Task for the same recipient, about that version, with event
    /// `superseded` and `partOf` this Task. It travels in the deletions file.
    fn superseded(&self, version: u64) -> Queued {
        let id = routing::DeliveryId::superseded_row(&self.info.id)
            .as_str()
            .to_owned();
        let info = Info {
            id: id.clone(),
            event: SUPERSEDED.to_owned(),
            focus_version: version,
            ..self.info.clone()
        };
        let mut task = self.task.clone();
        task["id"] = json!(id);
        task["meta"] = json!({"tag": [{"system": RECIPIENT_TAG_SYSTEM, "code": info.recipient}]});
        task["identifier"] = json!([{"system": DELIVERY_ID_SYSTEM, "value": id}]);
        task["focus"] = json!({"reference": info.focus()});
        task["partOf"] = json!([{"reference": format!("Task/{}", self.info.id)}]);
        task["authoredOn"] = json!(now_instant());
        if let Some(inputs) = task.get_mut("input").and_then(Value::as_array_mut) {
            for input in inputs {
                if input.pointer("/type/coding/0/code").and_then(Value::as_str) == Some("event") {
                    input["valueCode"] = json!(SUPERSEDED);
                }
            }
        }
        if let Some(object) = task.as_object_mut() {
            object.shift_remove("output");
        }
        let delivery = DeliveryState::new();
        set_state(&mut task, &delivery, &now_instant());
        Queued {
            version: 0,
            task,
            info,
            delivery,
            parcel: None,
            new: true,
        }
    }

    /// Moves the Task through `events` and stores the end state once, with `audits`.
    async fn record(
        &mut self,
        state: &AppState,
        events: Vec<DeliveryEvent>,
        audits: Vec<Write>,
    ) -> Result<(), ApiError> {
        let policy = retry_policy(state, self.info.channel)?;
        let mut next = self.delivery.clone();
        for event in events {
            next = step(&next, event, &policy)?;
        }
        self.version = save(state, self.version, &mut self.task, &next, audits).await?;
        self.delivery = next;
        Ok(())
    }

    /// An attempt that failed before anything was sent (the record cannot go in a parcel).
    async fn fail(&mut self, state: &AppState, failure: Failure) -> Result<(), ApiError> {
        let now = OffsetDateTime::now_utc();
        let failed = DeliveryEvent::Failed {
            now,
            failure,
            random: random(),
        };
        self.record(
            state,
            vec![DeliveryEvent::Start { now }, failed],
            Vec::new(),
        )
        .await
    }

    /// Refused at the consent re-check, with its AuditEvent (outcome 4).
    async fn refuse(
        &mut self,
        state: &AppState,
        reason: String,
        decision: Option<&Decision>,
    ) -> Result<(), ApiError> {
        let audit = refusal_audit(&self.info, &reason, decision);
        let now = OffsetDateTime::now_utc();
        self.record(
            state,
            vec![DeliveryEvent::Refused { now, reason }],
            vec![audit],
        )
        .await
    }
}

/// A replayed delivery leaves its parcel: the tag goes, and its output is renamed
/// (`earlier-file`, `earlier-digest`) so the Task still tells what it was sent in. It is then
/// gathered into a new parcel of its own round, so siblings an operator discarded are never
/// sent again, and the old parcel id is never sent with different content.
pub(super) fn leave_parcel(task: &mut Value, channel: Channel) {
    if !COLLECTED.contains(&channel) {
        return;
    }
    let name = parcel_output(channel);
    if let Some(outputs) = task.get_mut("output").and_then(Value::as_array_mut) {
        for output in outputs {
            if output
                .pointer("/type/coding/0/code")
                .and_then(Value::as_str)
                == Some(name)
            {
                output["type"] = param(&format!("earlier-{name}"));
            }
        }
    }
    if let Some(tags) = task.pointer_mut("/meta/tag").and_then(Value::as_array_mut) {
        tags.retain(|t| t.get("system").and_then(Value::as_str) != Some(PARCEL_TAG_SYSTEM));
    }
}

fn parcel_of(task: &Value, channel: Channel) -> Option<String> {
    output(task, parcel_output(channel))
        .and_then(|o| o.get("valueString"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn log_failure(result: Result<(), ApiError>, what: &str) {
    if let Err(error) = result {
        tracing::warn!(error = %reason_of(&error), "{what}");
    }
}

// ---------------------------------------------------------------------------------------------
// The worker's round.

/// One round of both collected channels: parcels built for what is due, then sent where the
/// recipient has an endpoint. Each recipient and each parcel on its own, so one that fails never
/// stops the others. The number of Tasks handled.
pub(super) async fn poll(state: &AppState, http: &reqwest::Client) -> Result<usize, ApiError> {
    let now = OffsetDateTime::now_utc();
    let file_interval = Duration::from_secs(state.config.routing.municipal_file_interval_secs);
    let mut handled = 0;
    for channel in COLLECTED {
        let mut criteria = unfiled();
        // Files: only Tasks queued before the current window, so a day's Tasks waiting for
        // midnight are not read every round.
        if let Some(start) = routing::file_window_start(now, file_interval)
            && channel == Channel::MunicipalFile
        {
            criteria.push((
                "authored-on".to_owned(),
                format!("lt{}", format_time(start)),
            ));
        }
        let waiting = load(state, channel, now, criteria)
            .await?
            .into_iter()
            .filter(|q| q.parcel.is_none() && q.is_gathered(channel, now, file_interval))
            .collect();
        handled += build(state, channel, waiting).await.handled;
        // Per recipient with an endpoint, so parcels waiting to be pulled by others never
        // crowd a scan.
        for recipient in pushed_to(state, channel) {
            let mut due = load(state, channel, now, vec![recipient_tag(&recipient)]).await?;
            due.retain(|q| q.parcel.is_some() && q.delivery.is_due(now));
            handled += send(state, http, due).await;
        }
    }
    Ok(handled)
}

/// Search criteria for Tasks not yet in a parcel.
fn unfiled() -> Vec<(String, String)> {
    vec![("_tag:not".to_owned(), format!("{PARCEL_TAG_SYSTEM}|"))]
}

fn recipient_tag(recipient: &str) -> (String, String) {
    (
        "_tag".to_owned(),
        format!("{RECIPIENT_TAG_SYSTEM}|{recipient}"),
    )
}

/// The registered municipality clients whose parcels of this channel are pushed.
fn pushed_to(state: &AppState, channel: Channel) -> Vec<String> {
    state
        .config
        .clients
        .iter()
        .filter(|c| c.kind == auth::ClientKind::Municipality)
        .filter(|c| parcel_endpoint(state, channel, &c.id).is_some())
        .map(|c| c.id.clone())
        .collect()
}

/// The channel's open Tasks. Unreadable ones are dead-lettered; attempts that never reported
/// back count as abandoned (the Tasks of one parcel wait for the same retry).
async fn load(
    state: &AppState,
    channel: Channel,
    now: OffsetDateTime,
    criteria: Vec<(String, String)>,
) -> Result<Vec<Queued>, ApiError> {
    let mut queue = Vec::new();
    let mut jitter: HashMap<Option<String>, u64> = HashMap::new();
    for version in scan_where(state, channel, "requested,in-progress,on-hold", criteria)? {
        let task = body_of(&version)?;
        let (delivery, info) = match (state_of(&task), Info::of(&task)) {
            (Ok(delivery), Ok(info)) => (delivery, info),
            (Err(error), _) | (_, Err(error)) => {
                dead_letter_unreadable(state, version.version, task, &error).await;
                continue;
            }
        };
        let parcel = parcel_of(&task, channel);
        let mut queued = Queued {
            version: version.version,
            task,
            info,
            delivery,
            parcel,
            new: false,
        };
        if matches!(queued.delivery.status, DeliveryStatus::InFlight { .. }) {
            let random = *jitter.entry(queued.parcel.clone()).or_insert_with(random);
            let abandoned = queued
                .record(
                    state,
                    vec![DeliveryEvent::Abandoned { now, random }],
                    Vec::new(),
                )
                .await;
            if abandoned.is_err() {
                log_failure(
                    abandoned,
                    "an abandoned parcel delivery could not be recorded",
                );
                continue;
            }
        }
        queue.push(queued);
    }
    Ok(queue)
}

/// What the consent re-check leaves of one delivery.
enum Checked {
    Record(Queued, Value),
    Deletion(Queued, Value),
}

/// What one build did.
struct Built {
    /// The Tasks filed in a parcel or settled otherwise.
    handled: usize,
    /// The parcels stored.
    parcels: Vec<Parcel>,
}

/// Re-checks consent for each due Task not yet in a parcel, settles refusals and failures, and
/// stores the parcels of the rest: per recipient (and, for digests, per week).
async fn build(state: &AppState, channel: Channel, waiting: Vec<Queued>) -> Built {
    let now = OffsetDateTime::now_utc();
    let mut groups: BTreeMap<(String, Option<IsoWeek>), Vec<Checked>> = BTreeMap::new();
    let mut settled = 0;
    for mut queued in waiting {
        if !queued.delivery.is_due(now) {
            continue;
        }
        let result = match recheck(state, &queued.info) {
            Ok(Recheck::Refuse(reason, decision)) => {
                queued.refuse(state, reason, decision.as_ref()).await
            }
            Ok(Recheck::Send(Some(body), _)) if queued.info.event != SUPERSEDED => {
                let key = (queued.info.recipient.clone(), week_key(channel, &queued));
                groups
                    .entry(key)
                    .or_default()
                    .push(Checked::Record(queued, body));
                continue;
            }
            // A deletion, or a superseded row: the row of the record as it was.
            Ok(Recheck::Send(_, _)) => match focus_content(state, &queued.info) {
                Ok(Focus::Deleted(content) | Focus::Record(content)) => {
                    let key = (queued.info.recipient.clone(), week_key(channel, &queued));
                    groups
                        .entry(key)
                        .or_default()
                        .push(Checked::Deletion(queued, content));
                    continue;
                }
                Ok(_) => {
                    let reason =
                        format!("{} has no stored content to deliver", queued.info.focus());
                    queued.fail(state, Failure::Permanent { reason }).await
                }
                Err(error) => Err(error),
            },
            // The record or the consents could not be read: a failed attempt, so a Task that
            // always fails here ends in the dead-letter queue instead of looping.
            Err(error) => {
                let reason = format!("the consent re-check could not run: {}", reason_of(&error));
                queued
                    .fail(
                        state,
                        Failure::Transient {
                            reason,
                            retry_after: None,
                        },
                    )
                    .await
            }
        };
        settled += 1;
        log_failure(result, "a parcel delivery could not be recorded");
    }
    let mut filed = 0;
    let mut parcels = Vec::new();
    for ((recipient, week), checked) in groups {
        let packed = match channel {
            Channel::WeeklyDigest => pack_digest(state, &recipient, week, checked).await,
            _ => pack_files(state, &recipient, checked).await,
        };
        settled += packed.settled;
        if packed.parcels.is_empty() {
            continue;
        }
        match file_parcels(state, &packed.parcels).await {
            Ok(count) => {
                filed += count;
                parcels.extend(packed.parcels.into_iter().map(|(parcel, _)| parcel));
            }
            Err(error) => {
                tracing::warn!(%recipient, error = %reason_of(&error), "parcels could not be stored; their deliveries wait for the next round")
            }
        }
    }
    Built {
        handled: filed + settled,
        parcels,
    }
}

/// Weekly digests are per week; municipal files are not.
fn week_key(channel: Channel, queued: &Queued) -> Option<IsoWeek> {
    (channel == Channel::WeeklyDigest)
        .then(|| queued.week())
        .flatten()
}

/// Parcels ready to store with the Tasks they carry, and how many Tasks failed instead.
#[derive(Default)]
struct Packed {
    parcels: Vec<(Parcel, Vec<Queued>)>,
    settled: usize,
}

/// The municipality's files: created and corrected records, and deletions, each one file in the
/// municipality's layout. A record the layout cannot express fails permanently with the reason.
async fn pack_files(state: &AppState, recipient: &str, checked: Vec<Checked>) -> Packed {
    let mut packed = Packed::default();
    let layout = municipality_code_of(state, recipient)
        .ok_or_else(|| {
            format!("{recipient} is not a registered municipality client with a municipality code")
        })
        .and_then(|code| {
            crate::municipal::layout(state, FILE_LAYOUT, &code).map_err(|e| reason_of(&e))
        });
    let layout = match layout {
        Ok(layout) => layout,
        Err(reason) => {
            for (mut queued, _) in checked.into_iter().map(Checked::split) {
                let failure = Failure::Permanent {
                    reason: reason.clone(),
                };
                log_failure(
                    queued.fail(state, failure).await,
                    "a municipal-file delivery could not be recorded",
                );
                packed.settled += 1;
            }
            return packed;
        }
    };
    let mut rows: BTreeMap<Kind, FileRows> = BTreeMap::new();
    // Per record, the row the municipality holds once the files before this one are in: a
    // correction whose key differs leaves that row behind, so the deletions file removes it.
    let mut held: HashMap<(String, String), Option<(u64, Row)>> = HashMap::new();
    let mut superseded: Vec<(Queued, Row)> = Vec::new();
    let mut checked = checked;
    checked.sort_by_key(|c| {
        let info = &c.queued().info;
        (
            info.focus_type.clone(),
            info.focus_id.clone(),
            info.focus_version,
        )
    });
    for checked in checked {
        let kind = match &checked {
            Checked::Record(..) => Kind::Records,
            Checked::Deletion(..) => Kind::Deletions,
        };
        let (mut queued, record) = checked.split();
        let patient = patient_of(state, &queued.info);
        let row = patient.as_ref().map_err(Clone::clone).and_then(|patient| {
            row_of(&layout, patient, &record).map_err(|e| {
                format!(
                    "the {} layout cannot hold {}: {e}",
                    layout.name(),
                    queued.info.focus()
                )
            })
        });
        let row = match row {
            Ok(row) => row,
            Err(reason) => {
                log_failure(
                    queued.fail(state, Failure::Permanent { reason }).await,
                    "a municipal-file delivery could not be recorded",
                );
                packed.settled += 1;
                continue;
            }
        };
        let record_key = (queued.info.focus_type.clone(), queued.info.focus_id.clone());
        if kind == Kind::Records && queued.info.event != SUPERSEDED {
            let before = match held.get(&record_key) {
                Some(before) => Ok(before.clone()),
                None => row_sent_before(state, &layout, &queued, patient.as_ref().ok()),
            };
            match before.and_then(|before| removal(state, &queued, before, &row)) {
                Ok(Some(removal)) => superseded.push(removal),
                Ok(None) => {}
                Err(error) => {
                    let reason = format!(
                        "the row the municipality holds could not be read: {}",
                        reason_of(&error)
                    );
                    let failure = Failure::Transient {
                        reason,
                        retry_after: None,
                    };
                    log_failure(
                        queued.fail(state, failure).await,
                        "a municipal-file delivery could not be recorded",
                    );
                    packed.settled += 1;
                    continue;
                }
            }
            held.insert(record_key, Some((queued.info.focus_version, row.clone())));
        } else if queued.info.event != SUPERSEDED {
            held.insert(record_key, None);
        }
        let (rows, members) = rows.entry(kind).or_default();
        rows.push(row);
        members.push(queued);
    }
    // A key the records file holds again is no row to remove.
    let kept: std::collections::HashSet<String> = rows
        .get(&Kind::Records)
        .map(|(rows, _)| rows.iter().map(|r| r.0.clone()).collect())
        .unwrap_or_default();
    for (queued, row) in superseded {
        if !kept.contains(&row.0) {
            let (rows, members) = rows.entry(Kind::Deletions).or_default();
            rows.push(row);
            members.push(queued);
        }
    }
    for (kind, (mut rows, members)) in rows {
        // One row per key: two deliveries may remove the same row.
        rows.sort();
        rows.dedup_by(|a, b| a.0 == b.0);
        let ids: Vec<&str> = members.iter().map(|q| q.info.id.as_str()).collect();
        let id = unused_id(state, |part| {
            routing::file_id(recipient, kind.code(), &ids, part)
        });
        let Some((id, _)) = id else {
            continue;
        };
        let parcel = Parcel {
            id,
            channel: Channel::MunicipalFile,
            recipient: recipient.to_owned(),
            kind,
            week: None,
            content_type: crate::municipal::csv_content_type(layout.encoding()),
            bytes: crate::municipal::render(&layout, layout.encoding(), rows),
        };
        packed.parcels.push((parcel, members));
    }
    packed
}

/// A municipal file row: its key (resident number, date, vaccine) and its text.
type Row = (String, String);

/// A file in the making: its rows and the Tasks they come from.
type FileRows = (Vec<Row>, Vec<Queued>);

fn row_of(
    layout: &municipal::Layout,
    patient: &Value,
    record: &Value,
) -> Result<Row, municipal::RowError> {
    let export = ExportRecord {
        patient,
        record,
        observations: &[],
    };
    municipal::export_row(layout, &export)
}

/// The row of this record the municipality last got from the rule, with its version: the
/// newest earlier version whose delivery went in a file that was delivered or is on its way.
/// `None` when there is none, or when that delivery was a deletion (the row is gone). The
/// earlier deliveries are read by their derived ids, so this needs no search.
fn row_sent_before(
    state: &AppState,
    layout: &municipal::Layout,
    queued: &Queued,
    patient: Option<&Value>,
) -> Result<Option<(u64, Row)>, ApiError> {
    let (Some(rule), Some(patient)) = (input_str(&queued.task, "rule"), patient) else {
        return Ok(None);
    };
    let info = &queued.info;
    for version in (1..info.focus_version).rev() {
        let id = routing::DeliveryId::of(
            rule,
            &info.focus_type,
            &info.focus_id,
            &version.to_string(),
            info.recipient_kind,
            &info.recipient,
        );
        let Some(stored) = state.store.read("Task", id.as_str())? else {
            continue;
        };
        let task = body_of(&stored)?;
        let on_its_way = matches!(
            task.get("status").and_then(Value::as_str),
            Some("completed" | "requested" | "in-progress" | "on-hold")
        );
        if !on_its_way || parcel_of(&task, Channel::MunicipalFile).is_none() {
            continue;
        }
        if input_str(&task, "event") == Some("deleted") {
            return Ok(None);
        }
        let Some(content) = state
            .store
            .vread(&info.focus_type, &info.focus_id, version)?
            .filter(|v| !v.is_deleted())
        else {
            return Ok(None);
        };
        return Ok(row_of(layout, patient, &body_of(&content)?)
            .ok()
            .map(|row| (version, row)));
    }
    Ok(None)
}

/// The delivery removing the row held `before` when this correction's row has another key.
/// Made once per correction: a replayed correction does not remove the row again.
fn removal(
    state: &AppState,
    correction: &Queued,
    before: Option<(u64, Row)>,
    row: &Row,
) -> Result<Option<(Queued, Row)>, ApiError> {
    let Some((version, old)) = before.filter(|(_, old)| old.0 != row.0) else {
        return Ok(None);
    };
    let derived = correction.superseded(version);
    if state.store.read("Task", &derived.info.id)?.is_some() {
        return Ok(None);
    }
    Ok(Some((derived, old)))
}

impl Checked {
    fn queued(&self) -> &Queued {
        match self {
            Checked::Record(queued, _) | Checked::Deletion(queued, _) => queued,
        }
    }

    fn split(self) -> (Queued, Value) {
        match self {
            Checked::Record(queued, value) | Checked::Deletion(queued, value) => (queued, value),
        }
    }
}

/// The record's Patient as stored now (the municipal row's person columns).
fn patient_of(state: &AppState, info: &Info) -> Result<Value, String> {
    let reference = info
        .patient
        .as_deref()
        .ok_or("the record names no patient")?;
    let id = reference.strip_prefix("Patient/").unwrap_or(reference);
    match state.store.read("Patient", id) {
        Ok(Some(version)) if !version.is_deleted() => body_of(&version).map_err(|e| reason_of(&e)),
        Ok(_) => Err(format!("{reference} is not stored")),
        Err(error) => Err(format!("{reference} could not be read: {error}")),
    }
}

/// The registered municipality client's local-government code.
fn municipality_code_of(state: &AppState, recipient: &str) -> Option<MunicipalityCode> {
    state
        .config
        .clients
        .iter()
        .find(|c| c.id == recipient && c.kind == auth::ClientKind::Municipality)
        .and_then(|c| c.municipality_code.as_deref())
        .and_then(|code| MunicipalityCode::parse(code).ok())
}

/// The first part (1, 2, …) whose parcel id no stored parcel has, with that id, so a parcel id
/// is never reused for different content. `None` when the store cannot be read; the deliveries
/// then wait for the next round.
fn unused_id(state: &AppState, id_of: impl Fn(u32) -> String) -> Option<(String, u32)> {
    let mut part = 1;
    loop {
        let id = id_of(part);
        match state.store.read(PARCEL_TYPE, &id) {
            Ok(Some(_)) => part += 1,
            Ok(None) => return Some((id, part)),
            Err(error) => {
                tracing::warn!(%error, "a parcel id could not be looked up; its deliveries wait for the next round");
                return None;
            }
        }
    }
}

/// The district team's digest of one week: the records that passed the consent re-check. A
/// digest lists records, so a deletion routed here fails permanently with the reason.
async fn pack_digest(
    state: &AppState,
    recipient: &str,
    week: Option<IsoWeek>,
    checked: Vec<Checked>,
) -> Packed {
    let mut packed = Packed::default();
    let mut records = Vec::new();
    for checked in checked {
        match checked {
            Checked::Record(queued, body) => records.push((queued, body)),
            Checked::Deletion(mut queued, _) => {
                let reason = "a weekly digest lists records, not deletions".to_owned();
                log_failure(
                    queued.fail(state, Failure::Permanent { reason }).await,
                    "a digest delivery could not be recorded",
                );
                packed.settled += 1;
            }
        }
    }
    let Some(week) = week else {
        for (mut queued, _) in records {
            let reason = "the delivery Task has no authoredOn, so it belongs to no week".to_owned();
            log_failure(
                queued.fail(state, Failure::Permanent { reason }).await,
                "a digest delivery could not be recorded",
            );
            packed.settled += 1;
        }
        return packed;
    };
    if records.is_empty() {
        return packed;
    }
    // Part 1 is the week's digest; records queued after it was made go into the next part.
    let Some((id, part)) = unused_id(state, |part| routing::digest_id(recipient, week, part))
    else {
        return packed;
    };
    let entries: Vec<(String, &Value)> = records
        .iter()
        .map(|(queued, body)| (queued.info.focus(), body))
        .collect();
    let bundle = digest_bundle(&id, recipient, week, part, &now_instant(), &entries);
    let parcel = Parcel {
        id,
        channel: Channel::WeeklyDigest,
        recipient: recipient.to_owned(),
        kind: Kind::Digest,
        week: Some(week),
        content_type: "application/fhir+json".to_owned(),
        bytes: bundle.to_string().into_bytes(),
    };
    packed
        .parcels
        .push((parcel, records.into_iter().map(|(q, _)| q).collect()));
    packed
}

/// A weekly digest: a `collection` Bundle whose first entry is a List naming the week, the
/// recipient and each record version, followed by the records.
fn digest_bundle(
    id: &str,
    recipient: &str,
    week: IsoWeek,
    part: u32,
    now: &str,
    records: &[(String, &Value)],
) -> Value {
    let last_day = week.end() - time::Duration::DAY;
    let title = match part {
        1 => format!("Weekly digest {week} for {recipient}"),
        n => format!("Weekly digest {week} for {recipient}, part {n}"),
    };
    let list = json!({
        "resourceType": "List",
        "id": id,
        "status": "current",
        "mode": "snapshot",
        "title": title,
        "code": {"coding": [{"system": CHANNEL_SYSTEM, "code": Channel::WeeklyDigest.code()}]},
        "date": now,
        "note": [{"text": format!(
            "Records routed from {} to {} (Japan time) that need care; records withheld by the consent re-check are left out.",
            week.start().date(),
            last_day.date()
        )}],
        "entry": records.iter().map(|(focus, _)| json!({"item": {"reference": focus}})).collect::<Vec<_>>(),
    });
    let mut entries = vec![json!({"resource": list})];
    entries.extend(
        records
            .iter()
            .map(|(_, record)| json!({"resource": record})),
    );
    json!({
        "resourceType": "Bundle",
        "id": id,
        "identifier": {"system": DIGEST_ID_SYSTEM, "value": id},
        "type": "collection",
        "timestamp": now,
        "entry": entries,
    })
}

/// Stores a recipient's parcels of one gathering and writes each parcel's id into every Task
/// it carries, in one commit: either the parcels exist with all their Tasks pointing at them
/// (a correction's file with the deletion of its old row), or nothing changed. The number of
/// Tasks.
async fn file_parcels(
    state: &AppState,
    parcels: &[(Parcel, Vec<Queued>)],
) -> Result<usize, ApiError> {
    let now = now_instant();
    let mut writes = Vec::new();
    let mut count = 0;
    for (parcel, members) in parcels {
        let name = parcel_output(parcel.channel);
        writes.push(Write {
            resource_type: PARCEL_TYPE.to_owned(),
            id: parcel.id.clone(),
            precondition: Precondition::MustNotExist,
            action: WriteAction::Put(parcel.to_binary()),
        });
        for queued in members {
            let mut task = queued.task.clone();
            if let Some(outputs) = task.get_mut("output").and_then(Value::as_array_mut) {
                outputs.push(json!({"type": param(name), "valueString": parcel.id}));
            }
            task["lastModified"] = json!(now);
            if let Some(tags) = task.pointer_mut("/meta/tag").and_then(Value::as_array_mut) {
                tags.push(json!({"system": PARCEL_TAG_SYSTEM, "code": parcel.id}));
            }
            writes.push(Write {
                resource_type: "Task".to_owned(),
                id: queued.info.id.clone(),
                precondition: if queued.new {
                    Precondition::MustNotExist
                } else {
                    Precondition::VersionIs(queued.version)
                },
                action: WriteAction::Put(task),
            });
            count += 1;
        }
    }
    state.store.commit(writes).await?;
    Ok(count)
}

/// Sends each parcel with due Tasks to its recipient's endpoint. The number of Tasks attempted.
async fn send(state: &AppState, http: &reqwest::Client, due: Vec<Queued>) -> usize {
    let mut parcels: BTreeMap<String, Vec<Queued>> = BTreeMap::new();
    for queued in due {
        if let Some(parcel) = queued.parcel.clone() {
            parcels.entry(parcel).or_default().push(queued);
        }
    }
    let mut attempted = 0;
    for (id, members) in parcels {
        match push(state, http, &id, members).await {
            Ok(count) => attempted += count,
            Err(error) => {
                tracing::warn!(parcel = %id, error = %reason_of(&error), "a parcel could not be sent")
            }
        }
    }
    attempted
}

/// One attempt to send a parcel: its Tasks in flight, the request, then all of them delivered,
/// retried (with one jitter, so they wait together) or dead-lettered.
async fn push(
    state: &AppState,
    http: &reqwest::Client,
    id: &str,
    members: Vec<Queued>,
) -> Result<usize, ApiError> {
    let parcel = match state.store.read(PARCEL_TYPE, id)? {
        Some(version) if !version.is_deleted() => Parcel::from_binary(&body_of(&version)?),
        _ => Err(format!("parcel {id} is not stored")),
    };
    let parcel = match parcel {
        Ok(parcel) => parcel,
        Err(reason) => {
            let count = members.len();
            for mut queued in members {
                let failure = Failure::Permanent {
                    reason: reason.clone(),
                };
                log_failure(
                    queued.fail(state, failure).await,
                    "a parcel delivery could not be recorded",
                );
            }
            return Ok(count);
        }
    };
    let Some(request) = parcel_request(state, http, &parcel) else {
        return Ok(0);
    };
    let mut started = Vec::new();
    for mut queued in members {
        let now = OffsetDateTime::now_utc();
        match queued
            .record(state, vec![DeliveryEvent::Start { now }], Vec::new())
            .await
        {
            Ok(()) => started.push(queued),
            // Changed meanwhile (an operator's discard): not sent as part of this attempt.
            Err(error) => {
                tracing::warn!(error = %reason_of(&error), "a parcel delivery could not start")
            }
        }
    }
    if started.is_empty() {
        return Ok(0);
    }
    let result = outcome_of(request).await;
    let now = OffsetDateTime::now_utc();
    let random = random();
    let description = match parcel.kind {
        Kind::Digest => format!("delivered in weekly digest {id}"),
        kind => format!("delivered in municipal file {id} ({})", kind.code()),
    };
    let count = started.len();
    for mut queued in started {
        let (event, audits) = match &result {
            Ok(()) => (
                DeliveryEvent::Succeeded { now },
                vec![delivery_audit(&queued.info, "0", &description, None)],
            ),
            Err(failure) => (
                DeliveryEvent::Failed {
                    now,
                    failure: failure.clone(),
                    random,
                },
                Vec::new(),
            ),
        };
        log_failure(
            queued.record(state, vec![event], audits).await,
            "a parcel delivery could not be recorded",
        );
        if let DeliveryStatus::Dead { reason, .. } = &queued.delivery.status {
            tracing::warn!(delivery = %queued.info.id, %reason, "a parcel delivery was dead-lettered");
        }
    }
    Ok(count)
}

/// Where a recipient's parcels of a channel are POSTed, or `None` when it pulls them: a
/// municipality's files go to `routing.municipal_files[code]`, a district team's digests to its
/// rest-hook endpoint (`routing.endpoints`).
fn parcel_endpoint(state: &AppState, channel: Channel, recipient: &str) -> Option<String> {
    let routing = &state.config.routing;
    match channel {
        Channel::WeeklyDigest => routing
            .endpoints
            .get(recipient)
            .map(|endpoint| format!("{}/Bundle", endpoint.trim_end_matches('/'))),
        _ => {
            let code = municipality_code_of(state, recipient)?;
            routing.municipal_files.get(code.as_str()).cloned()
        }
    }
}

/// The request that delivers a parcel, or `None` when its recipient pulls it: a municipal file
/// as it is, with its id and kind in headers; a digest as a FHIR create of the Bundle, with its
/// id in the rest-hook delivery-id header.
fn parcel_request(
    state: &AppState,
    http: &reqwest::Client,
    parcel: &Parcel,
) -> Option<reqwest::RequestBuilder> {
    let url = parcel_endpoint(state, parcel.channel, &parcel.recipient)?;
    let request = match parcel.channel {
        Channel::WeeklyDigest => http
            .post(url)
            .header(DELIVERY_ID_HEADER, &parcel.id)
            .header("accept", "application/fhir+json"),
        _ => http
            .post(url)
            .header(FILE_ID_HEADER, &parcel.id)
            .header(FILE_KIND_HEADER, parcel.kind.code()),
    };
    Some(
        request
            .header("content-type", &parcel.content_type)
            .body(parcel.bytes.clone()),
    )
}

// ---------------------------------------------------------------------------------------------
// HTTP: pulling parcels, and the operator's digest command.

/// Register the parcel routes inside `/routing/v1`.
pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    for (path, channel) in [
        ("/files", Channel::MunicipalFile),
        ("/digests", Channel::WeeklyDigest),
    ] {
        let mut listing = web::resource(path).route(web::get().to(
            move |state: State, req: HttpRequest| async move {
                answer(list_parcels(&state, &req, channel))
            },
        ));
        listing = match channel {
            Channel::WeeklyDigest => listing.route(web::post().to(build_digests)),
            _ => listing.route(web::post().to(build_files)),
        };
        cfg.service(listing)
            .route(
                &format!("{path}/{{parcel}}"),
                web::get().to(
                    move |state: State, req: HttpRequest, id: web::Path<String>| async move {
                        match owned_parcel(&state, &req, channel, &id) {
                            Ok(parcel) => HttpResponse::Ok()
                                .content_type(parcel.content_type)
                                .body(parcel.bytes),
                            Err(error) => error_response(&error, None),
                        }
                    },
                ),
            )
            .route(
                &format!("{path}/{{parcel}}/ack"),
                web::post().to(
                    move |state: State, req: HttpRequest, id: web::Path<String>| async move {
                        answer(ack_parcel(&state, &req, channel, &id).await)
                    },
                ),
            );
    }
}

/// The caller's parcel of this channel, else 404 (another recipient's parcel does not exist
/// for the caller).
fn owned_parcel(
    state: &AppState,
    req: &HttpRequest,
    channel: Channel,
    id: &str,
) -> Result<Parcel, ApiError> {
    let access = caller_access(req);
    let caller = caller(&access)?;
    let missing = || ApiError::not_found(format!("no {} {id} for you", parcel_output(channel)));
    let version = state
        .store
        .read(PARCEL_TYPE, id)?
        .filter(|v| !v.is_deleted())
        .ok_or_else(missing)?;
    let parcel = Parcel::from_binary(&body_of(&version)?).map_err(|_| missing())?;
    if parcel.channel != channel || parcel.recipient != caller.client_id {
        return Err(missing());
    }
    Ok(parcel)
}

/// `GET /routing/v1/files` and `/routing/v1/digests`: the caller's parcels waiting to be
/// pulled, as a searchset Bundle of their Binaries without data, each linking its content and
/// its ack.
fn list_parcels(state: &AppState, req: &HttpRequest, channel: Channel) -> Result<Value, ApiError> {
    let access = caller_access(req);
    let caller = caller(&access)?;
    let root = root_url(state, req);
    let path = match channel {
        Channel::WeeklyDigest => "digests",
        _ => "files",
    };
    let mut waiting: BTreeMap<String, usize> = BTreeMap::new();
    for version in scan(state, channel, "requested", Some(&caller.client_id))? {
        if let Some(parcel) = parcel_of(&body_of(&version)?, channel) {
            *waiting.entry(parcel).or_default() += 1;
        }
    }
    let mut entries = Vec::new();
    for (id, deliveries) in waiting {
        let Some(version) = state.store.read(PARCEL_TYPE, &id)? else {
            continue;
        };
        let Ok(parcel) = Parcel::from_binary(&body_of(&version)?) else {
            continue;
        };
        let url = format!("{root}/routing/v1/{path}/{id}");
        entries.push(json!({
            "fullUrl": url,
            "link": [{"relation": "ack", "url": format!("{url}/ack")}],
            "resource": parcel.summary(),
            "search": {"mode": "match", "extension": [{
                "url": "https://musubi.example.org/fhir/StructureDefinition/parcel-deliveries",
                "valueUnsignedInt": deliveries}]},
        }));
    }
    Ok(
        json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries}),
    )
}

/// `POST /routing/v1/{files|digests}/{id}/ack`: the recipient has the parcel. Every Task it
/// carries is completed with its AuditEvent; a second ack is a conflict, not a second delivery.
async fn ack_parcel(
    state: &AppState,
    req: &HttpRequest,
    channel: Channel,
    id: &str,
) -> Result<Value, ApiError> {
    // Parcel ids include the recipient, so the parcel's tag finds only the caller's Tasks.
    owned_parcel(state, req, channel, id)?;
    let mut members = Vec::new();
    let carried = vec![("_tag".to_owned(), format!("{PARCEL_TAG_SYSTEM}|{id}"))];
    for version in scan_where(state, channel, "requested", carried)? {
        let task = body_of(&version)?;
        if parcel_of(&task, channel).as_deref() != Some(id) {
            continue;
        }
        let delivery = state_of(&task).map_err(ApiError::internal)?;
        let info = Info::of(&task).map_err(ApiError::internal)?;
        members.push(Queued {
            version: version.version,
            task,
            info,
            delivery,
            parcel: Some(id.to_owned()),
            new: false,
        });
    }
    if members.is_empty() {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            format!(
                "{} {id} has no deliveries waiting: it was already acknowledged",
                parcel_output(channel)
            ),
        ));
    }
    let description = format!(
        "delivered by {} pull ({} {id} acknowledged)",
        channel.code(),
        parcel_output(channel)
    );
    let mut tasks = Vec::new();
    for mut queued in members {
        let now = OffsetDateTime::now_utc();
        let audit = delivery_audit(&queued.info, "0", &description, None);
        let events = vec![
            DeliveryEvent::Start { now },
            DeliveryEvent::Succeeded { now },
        ];
        queued.record(state, events, vec![audit]).await?;
        tasks.push(json!({"fullUrl": format!("Task/{}", queued.info.id), "resource": queued.task}));
    }
    Ok(json!({"resourceType": "Bundle", "type": "collection", "entry": tasks}))
}

/// `POST /routing/v1/digests?week=YYYY-Www` (operator): builds that week's digests now, even
/// before the week has ended; the worker sends them on its next round, or they wait to be
/// pulled. Building again adds only records queued since. Answers every digest of the week.
async fn build_digests(state: State, req: HttpRequest) -> HttpResponse {
    answer(build_week(&state, &req).await)
}

async fn build_week(state: &AppState, req: &HttpRequest) -> Result<Value, ApiError> {
    operator(req)?;
    let week = crate::rest::parse_query_string(req.query_string())
        .into_iter()
        .find(|(k, _)| k == "week")
        .map(|(_, v)| v)
        .ok_or_else(|| ApiError::bad_request("week is required, as YYYY-Www (e.g. 2026-W48)"))?;
    let week = IsoWeek::parse(&week).map_err(|e| ApiError::bad_request(e).at("week"))?;
    let now = OffsetDateTime::now_utc();
    let waiting: Vec<Queued> = load(state, Channel::WeeklyDigest, now, unfiled())
        .await?
        .into_iter()
        .filter(|q| q.parcel.is_none() && q.week() == Some(week))
        .collect();
    build(state, Channel::WeeklyDigest, waiting).await;
    let params = vec![("_tag".to_owned(), format!("{WEEK_SYSTEM}|{week}"))];
    let query = search::parse_query(search::Registry::r4(), PARCEL_TYPE, &params, true)?;
    let page = state.store.search(&SearchRequest {
        resource_type: PARCEL_TYPE,
        query: &query,
        offset: 0,
        count: MAX_SCAN,
        need_total: false,
    })?;
    let mut parcels = Vec::new();
    for version in &page.matches {
        if let Ok(parcel) = Parcel::from_binary(&body_of(version)?) {
            parcels.push(parcel);
        }
    }
    Ok(parcel_bundle(&parcels))
}

/// The operator's answer: the parcels as a searchset Bundle of their Binaries without data.
fn parcel_bundle(parcels: &[Parcel]) -> Value {
    let entries: Vec<Value> = parcels
        .iter()
        .map(|p| json!({"fullUrl": format!("{}/{}", PARCEL_TYPE, p.id), "resource": p.summary()}))
        .collect();
    json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries})
}

/// `POST /routing/v1/files?municipality=NNNNNN` (operator): builds the municipality's files
/// now from every due delivery not yet in a file, before its window has ended; the worker sends
/// them on its next round, or they wait to be pulled. Answers the files built.
async fn build_files(state: State, req: HttpRequest) -> HttpResponse {
    answer(build_municipality(&state, &req).await)
}

async fn build_municipality(state: &AppState, req: &HttpRequest) -> Result<Value, ApiError> {
    operator(req)?;
    let code = crate::rest::parse_query_string(req.query_string())
        .into_iter()
        .find(|(k, _)| k == "municipality")
        .map(|(_, v)| v)
        .ok_or_else(|| {
            ApiError::bad_request(
                "municipality is required, as a local-government code (e.g. 131024)",
            )
        })?;
    let code = MunicipalityCode::parse(&code)
        .map_err(|e| ApiError::bad_request(e.to_string()).at("municipality"))?;
    let recipients: Vec<&str> = state
        .config
        .clients
        .iter()
        .filter(|c| municipality_code_of(state, &c.id).as_ref() == Some(&code))
        .map(|c| c.id.as_str())
        .collect();
    if recipients.is_empty() {
        return Err(ApiError::not_found(format!(
            "no registered municipality client has the code {code}"
        )));
    }
    let now = OffsetDateTime::now_utc();
    let mut waiting = Vec::new();
    for recipient in recipients {
        let mut criteria = unfiled();
        criteria.push(recipient_tag(recipient));
        let queued = load(state, Channel::MunicipalFile, now, criteria).await?;
        waiting.extend(queued.into_iter().filter(|q| q.parcel.is_none()));
    }
    let built = build(state, Channel::MunicipalFile, waiting).await;
    Ok(parcel_bundle(&built.parcels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parcel_round_trips_through_its_binary() {
        let parcel = Parcel {
            id: "f1".into(),
            channel: Channel::MunicipalFile,
            recipient: "city".into(),
            kind: Kind::Deletions,
            week: None,
            content_type: "text/csv; charset=Shift_JIS".into(),
            bytes: vec![0x82, 0xa0, b',', b'\r', b'\n'],
        };
        let binary = parcel.to_binary();
        assert_eq!(Parcel::from_binary(&binary).unwrap(), parcel);
        assert!(parcel.summary().get("data").is_none());
        let issues = fhir::validate::validate_resource(fhir::Definitions::r4(), &binary);
        assert!(issues.iter().all(|i| !i.severity.is_error()), "{issues:?}");
        let digest = Parcel {
            kind: Kind::Digest,
            channel: Channel::WeeklyDigest,
            week: Some(IsoWeek::parse("2026-W48").unwrap()),
            ..parcel
        };
        assert_eq!(Parcel::from_binary(&digest.to_binary()).unwrap(), digest);
    }

    #[test]
    fn a_superseded_row_is_a_valid_task_about_the_earlier_version() {
        let recipient = routing::Recipient {
            kind: RecipientKind::Municipality,
            id: "city".into(),
            has_endpoint: false,
        };
        let resource = json!({"resourceType": "Immunization", "id": "i1"});
        let event = routing::Event {
            kind: routing::EventKind::Updated,
            resource_type: "Immunization",
            id: "i1",
            version: "2",
            resource: &resource,
        };
        let rule = "routine-immunization-to-home-municipality";
        let id = routing::DeliveryId::new(rule, &event, &recipient);
        // An earlier version's delivery is found by its id alone.
        assert_eq!(
            routing::DeliveryId::of(rule, "Immunization", "i1", "2", recipient.kind, "city"),
            id
        );
        let delivery = routing::Delivery {
            id,
            rule_id: rule.into(),
            event: routing::EventKind::Updated,
            resource_type: "Immunization".into(),
            resource_id: "i1".into(),
            version: "2".into(),
            recipient,
            channel: Channel::MunicipalFile,
            purpose: routing::PurposeOfUse::Pubhlth,
            basis: routing::Basis::Consent,
        };
        let task = new_task(&delivery, Some("p1"), "2026-11-25T00:00:00.000Z");
        let correction = Queued {
            version: 3,
            info: Info::of(&task).unwrap(),
            delivery: state_of(&task).unwrap(),
            task,
            parcel: None,
            new: false,
        };
        let removal = correction.superseded(1);
        assert!(removal.new);
        assert_eq!(
            removal.task["focus"]["reference"],
            "Immunization/i1/_history/1"
        );
        assert_eq!(
            removal.task["partOf"][0]["reference"],
            format!("Task/{}", correction.info.id)
        );
        let info = Info::of(&removal.task).unwrap();
        assert_eq!((info.event.as_str(), info.focus_version), (SUPERSEDED, 1));
        assert_ne!(info.id, correction.info.id);
        assert_eq!(state_of(&removal.task).unwrap(), DeliveryState::new());
        let issues = fhir::validate::validate_resource(fhir::Definitions::r4(), &removal.task);
        assert!(issues.iter().all(|i| !i.severity.is_error()), "{issues:?}");
    }

    #[test]
    fn a_digest_is_a_valid_collection_listing_its_records() {
        let week = IsoWeek::parse("2026-W48").unwrap();
        let observation = json!({"resourceType": "Observation", "id": "o1", "status": "final",
            "code": {"text": "judgement"}, "subject": {"reference": "Patient/p1"},
            "meta": {"versionId": "2"}});
        let records = [("Observation/o1/_history/2".to_owned(), &observation)];
        let bundle = digest_bundle("d1", "team", week, 1, "2026-11-30T00:00:00.000Z", &records);
        assert_eq!(bundle["type"], "collection");
        assert_eq!(bundle["entry"][0]["resource"]["resourceType"], "List");
        assert_eq!(
            bundle["entry"][0]["resource"]["entry"][0]["item"]["reference"],
            "Observation/o1/_history/2"
        );
        assert_eq!(bundle["entry"][1]["resource"]["id"], "o1");
        let note = bundle["entry"][0]["resource"]["note"][0]["text"]
            .as_str()
            .unwrap();
        assert!(note.contains("2026-11-23 to 2026-11-29"), "{note}");
        let issues = fhir::validate::validate_resource(fhir::Definitions::r4(), &bundle);
        assert!(
            issues.iter().all(|i| !i.severity.is_error()),
            "{issues:?}\n{bundle:#}"
        );
    }
}
