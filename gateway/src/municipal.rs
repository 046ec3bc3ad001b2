//! The municipal adapter's I/O side (docs/municipal.md): a municipality's file imported into the
//! store in transactional chunks, its residents' records exported in its own layout, and the
//! PMH-style JSON form. Reading, mapping and rendering rows is the `municipal` crate's; this
//! module validates what it maps, writes it, counts and reports.
//!
//! An export to a municipality's client is consent-checked record by record (`disclosure::Exit`,
//! the municipality's purpose): a record neither a legal basis nor a consent lets it receive
//! is left out and only counted; the export is audited per patient (docs/consent.md).
//!
//! An import is synchronous and runs on the caller's thread (the CLI's, or a thread of its own
//! for an HTTP import): the store's writer thread commits one chunk while the next is parsed.

use std::collections::HashMap;
use std::io::Read;
use std::time::Instant;

use identifiers::MunicipalityCode;
use municipal::{Encoding, EncodingChoice, ExportRecord, Layout, MappedRow, RowError};
use serde::Serialize;
use serde_json::{Value, json};
use store::{CommitFuture, Committed, Precondition, Store, Write, WriteAction, WriteOutcome};

use crate::access::Access;
use crate::disclosure::{Event, Exit};
use crate::domain::{parse_stored, search_all, search_all_versions};
use crate::error::{ApiError, ErrorKind};
use crate::rest::Ctx;
use crate::state::AppState;

/// Rejected rows listed one by one in a report; beyond this only their number is given (a
/// broken 1 000 000-row file must not make a report of a million entries).
const MAX_LISTED_ERRORS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImportState {
    Running,
    Completed,
    Failed,
}

/// One rejected row, as the operator needs it to correct the line.
#[derive(Debug, Clone, Serialize)]
pub struct RowProblem {
    pub line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub reason: String,
}

impl From<RowError> for RowProblem {
    fn from(e: RowError) -> Self {
        RowProblem {
            line: e.line,
            column: e.column,
            value: e.value,
            reason: e.reason,
        }
    }
}

/// What an import did; also its live status while it runs.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportReport {
    pub state: ImportState,
    pub layout: String,
    pub municipality: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    pub bytes_read: u64,
    /// The file's size when known, so a client can show how far the import is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_total: Option<u64>,
    pub rows_read: u64,
    /// Rows stored (created or changed something).
    pub rows_imported: u64,
    /// Rows whose resources were all already stored exactly so (a re-import).
    pub rows_unchanged: u64,
    pub rows_rejected: u64,
    pub resources_created: u64,
    pub resources_updated: u64,
    pub resources_unchanged: u64,
    pub errors: Vec<RowProblem>,
    pub errors_not_listed: u64,
    /// Why the whole import stopped, when it did; rows before it are stored (chunks are atomic).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    pub elapsed_ms: u64,
}

impl ImportReport {
    pub fn new(layout: &str, municipality: &MunicipalityCode) -> ImportReport {
        ImportReport {
            state: ImportState::Running,
            layout: layout.to_owned(),
            municipality: municipality.as_str().to_owned(),
            encoding: None,
            bytes_read: 0,
            bytes_total: None,
            rows_read: 0,
            rows_imported: 0,
            rows_unchanged: 0,
            rows_rejected: 0,
            resources_created: 0,
            resources_updated: 0,
            resources_unchanged: 0,
            errors: Vec::new(),
            errors_not_listed: 0,
            failure: None,
            elapsed_ms: 0,
        }
    }

    fn reject(&mut self, problem: RowProblem) {
        self.rows_rejected += 1;
        if self.errors.len() < MAX_LISTED_ERRORS {
            self.errors.push(problem);
        } else {
            self.errors_not_listed += 1;
        }
    }

    /// Stop with `reason`; the first reason given is kept (what failed later follows from it).
    fn fail(&mut self, reason: String) {
        self.state = ImportState::Failed;
        self.failure.get_or_insert(reason);
    }
}

/// The layout `name` as `municipality` uses it.
pub fn layout(
    state: &AppState,
    name: &str,
    municipality: &MunicipalityCode,
) -> Result<Layout, ApiError> {
    state
        .domain
        .layouts
        .resolve(name, municipality)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Every issue that keeps a mapped resource out of the store: R4 structure and the profiles it
/// claims or its type must conform to. (The routine-vaccination rules are not applied to
/// imported history: the municipality's register is the record of what was given.)
fn resource_problem(state: &AppState, line: u64, resource: &Value) -> Option<RowProblem> {
    let resource_type = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut issues = fhir::validate::validate_resource(fhir::Definitions::r4(), resource);
    if !issues.iter().any(|i| i.severity.is_error()) {
        issues = state
            .domain
            .profile_issues(resource, &[], &state.config.profiles.enforce);
    }
    let error = issues.into_iter().find(|i| i.severity.is_error())?;
    Some(RowProblem {
        line,
        column: None,
        value: None,
        reason: format!(
            "the {resource_type} this row maps to is not valid: {} (at {})",
            error.diagnostics, error.expression
        ),
    })
}

/// Per row of a chunk: the (type, id) of each of its resources.
type RowKeys = Vec<Vec<(String, String)>>;

/// A chunk of good rows on its way to the store.
struct Chunk {
    writes: Vec<Write>,
    rows: RowKeys,
}

impl Chunk {
    fn new() -> Chunk {
        Chunk {
            writes: Vec::new(),
            rows: Vec::new(),
        }
    }

    /// Whether the chunk already writes exactly this content for the resource.
    fn holds(
        &self,
        mapped: &municipal::MappedResource,
        index: &HashMap<(String, String), usize>,
    ) -> bool {
        let key = (mapped.resource_type.to_owned(), mapped.id.clone());
        index.get(&key).is_some_and(|&at| {
            matches!(&self.writes[at].action, WriteAction::Put(held) if *held == mapped.resource)
        })
    }

    /// Add a row's resources; a resource already in the chunk (a person's Patient on their
    /// second row) is written once, with the later row's content.
    fn add(&mut self, row: MappedRow, index: &mut HashMap<(String, String), usize>) {
        let mut keys = Vec::with_capacity(row.resources.len());
        for mapped in row.resources {
            let key = (mapped.resource_type.to_owned(), mapped.id.clone());
            let write = Write {
                resource_type: key.0.clone(),
                id: mapped.id,
                precondition: Precondition::None,
                action: WriteAction::Put(mapped.resource),
            };
            match index.get(&key) {
                Some(&at) => self.writes[at] = write,
                None => {
                    index.insert(key.clone(), self.writes.len());
                    self.writes.push(write);
                }
            }
            keys.push(key);
        }
        self.rows.push(keys);
    }
}

/// Count what a committed chunk did, per resource and per row.
fn tally(report: &mut ImportReport, rows: &[Vec<(String, String)>], committed: &[Committed]) {
    let mut outcomes: HashMap<(&str, &str), WriteOutcome> = HashMap::new();
    // The chunk's AuditEvents are the trail, not imported records.
    for c in committed
        .iter()
        .filter(|c| c.version.resource_type != "AuditEvent")
    {
        match c.outcome {
            WriteOutcome::Created => report.resources_created += 1,
            WriteOutcome::Unchanged => report.resources_unchanged += 1,
            _ => report.resources_updated += 1,
        }
        outcomes.insert(
            (c.version.resource_type.as_str(), c.version.id.as_str()),
            c.outcome,
        );
    }
    for row in rows {
        let unchanged = row.iter().all(|(t, id)| {
            outcomes.get(&(t.as_str(), id.as_str())) == Some(&WriteOutcome::Unchanged)
        });
        if unchanged {
            report.rows_unchanged += 1;
        } else {
            report.rows_imported += 1;
        }
    }
}

/// How an import hands its chunks to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Each chunk committed on its own and counted once durable: imports over HTTP, which run
    /// while clients read and write.
    Commit,
    /// Chunks staged ([`Store::stage`]) and written as sorted tables each time `rows` rows are
    /// staged, counted once written: `musubi import`, which holds the store alone. The same
    /// resources, versions, index entries and AuditEvents as `Commit`, without the journal
    /// and the memtables (docs/performance.md, round 5).
    Bulk { rows: usize },
}

/// Rows `musubi import` stages before writing them as sorted tables. The staged key
/// operations take ~5 KiB per row until written; at 100 000 rows, 5 000, 10 000 and 20 000
/// cost the same CPU per row and peaked at 157, 183 and 259 MiB (docs/performance.md).
pub const BULK_ROWS: usize = 5_000;

/// Import a municipal file (`source`: the file, its size when known, its encoding): every good
/// row stored, every bad row reported with its line, in atomic chunks of
/// `municipal.chunk_rows` rows, each written with its AuditEvents (one per patient, `access`
/// as the agent) as `delivery` says. `progress` sees the report after each chunk.
pub fn import(
    state: &AppState,
    access: &Access,
    layout: &Layout,
    municipality: &MunicipalityCode,
    (input, bytes_total, encoding): (impl Read, Option<u64>, EncodingChoice),
    delivery: Delivery,
    progress: &mut dyn FnMut(&ImportReport),
) -> ImportReport {
    let started = Instant::now();
    let mut report = ImportReport::new(layout.name(), municipality);
    report.bytes_total = bytes_total;
    let mut rows = match municipal::Import::new(layout, municipality, input, encoding) {
        Ok(rows) => rows,
        Err(e) => {
            report.fail(e.to_string());
            return report;
        }
    };
    let chunk_rows = state.config.municipal.chunk_rows;
    let mut sink = ChunkSink::new(state.store.as_ref(), delivery);
    let mut exhausted = false;
    while !exhausted {
        let mut chunk = Chunk::new();
        let mut index = HashMap::new();
        while chunk.rows.len() < chunk_rows {
            let Some(next) = rows.next() else {
                exhausted = true;
                break;
            };
            report.rows_read += 1;
            match next {
                Ok(row) => {
                    // Validation is a pure function of the content: a resource this chunk
                    // already holds with the same content (a person's Patient on each of their
                    // rows) passed it already.
                    let problem = row
                        .resources
                        .iter()
                        .filter(|r| !chunk.holds(r, &index))
                        .find_map(|r| resource_problem(state, row.line, &r.resource));
                    match problem {
                        Some(problem) => report.reject(problem),
                        None => chunk.add(row, &mut index),
                    }
                }
                Err(error) => report.reject(error.into()),
            }
        }
        report.bytes_read = rows.bytes_read();
        report.encoding = Some(rows.encoding().to_string());
        // The writer commits this chunk while the loop parses the next one; the previous
        // chunk's answer is collected first so the report stays in file order.
        let mut writes = chunk.writes;
        match crate::disclosure::bulk_write_audit(state, access, &writes) {
            Ok(events) => writes.extend(events),
            Err(error) => {
                report.fail(format!(
                    "the import's audit trail could not be made ({error}); no row of this chunk is stored"
                ));
                break;
            }
        }
        if !sink.send(&mut report, writes, chunk.rows) {
            break;
        }
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        progress(&report);
    }
    sink.finish(&mut report);
    if report.state == ImportState::Running {
        report.state = ImportState::Completed;
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    progress(&report);
    report
}

/// The store side of an import: the chunk the store is writing while the next one is mapped,
/// and (for [`Delivery::Bulk`]) the staged chunks not yet written. Rows are counted only once
/// their chunk is durable.
struct ChunkSink<'a> {
    store: &'a dyn Store,
    delivery: Delivery,
    in_flight: Option<(CommitFuture, RowKeys)>,
    /// Staged chunks with what staging them did, waiting for `write_staged`.
    staged: Vec<(Vec<Committed>, RowKeys)>,
    /// The store refused a chunk; a commit sent after it is not counted (see `finish`).
    refused: bool,
}

impl<'a> ChunkSink<'a> {
    fn new(store: &'a dyn Store, delivery: Delivery) -> ChunkSink<'a> {
        ChunkSink {
            store,
            delivery,
            in_flight: None,
            staged: Vec::new(),
            refused: false,
        }
    }

    /// Hand a chunk to the store, then settle the one before it; false when the import must
    /// stop.
    fn send(&mut self, report: &mut ImportReport, writes: Vec<Write>, rows: RowKeys) -> bool {
        let queued = (!writes.is_empty()).then(|| {
            let future = match self.delivery {
                Delivery::Commit => self.store.commit(writes),
                Delivery::Bulk { .. } => self.store.stage(writes),
            };
            (future, rows)
        });
        let previous = std::mem::replace(&mut self.in_flight, queued);
        previous.is_none_or(|chunk| self.settle(report, chunk))
    }

    /// Wait for a chunk's commit (or staging) and count it once durable; false when the store
    /// refused it.
    fn settle(&mut self, report: &mut ImportReport, chunk: (CommitFuture, RowKeys)) -> bool {
        match self.delivery {
            Delivery::Commit => {
                let (future, rows) = chunk;
                match futures_executor::block_on(future) {
                    Ok(committed) => {
                        tally(report, &rows, &committed);
                        true
                    }
                    Err(error) => self.refuse(report, &error),
                }
            }
            Delivery::Bulk { rows: bulk_rows } => {
                self.keep_staged(report, chunk)
                    && (self.staged_rows() < bulk_rows || self.write_staged(report))
            }
        }
    }

    /// Wait for a chunk's staging and keep it to be counted once written.
    fn keep_staged(
        &mut self,
        report: &mut ImportReport,
        (future, rows): (CommitFuture, RowKeys),
    ) -> bool {
        match futures_executor::block_on(future) {
            Ok(mut committed) => {
                // Counting needs the outcomes only; the bodies would keep a second copy of
                // every staged resource in memory until the write.
                for c in &mut committed {
                    c.version.body = Default::default();
                }
                self.staged.push((committed, rows));
                true
            }
            Err(error) => self.refuse(report, &error),
        }
    }

    fn staged_rows(&self) -> usize {
        staged_rows(&self.staged)
    }

    fn refuse(&mut self, report: &mut ImportReport, error: &store::StoreError) -> bool {
        tracing::error!(%error, "municipal import: a chunk could not be stored");
        report.fail(format!(
            "the store refused a chunk ({error}); every row before it is stored, no row of it is"
        ));
        self.refused = true;
        false
    }

    /// Write the staged chunks and count their rows; false when the store could not, or
    /// refused the chunk sent last.
    fn write_staged(&mut self, report: &mut ImportReport) -> bool {
        // The chunk sent last reaches the writer before this request, so it is written too:
        // it is waited for and counted with the others.
        let last_kept = match self.in_flight.take() {
            Some(last) => self.keep_staged(report, last),
            None => true,
        };
        if self.staged.is_empty() {
            return last_kept;
        }
        let staged = std::mem::take(&mut self.staged);
        match futures_executor::block_on(self.store.write_staged()) {
            Ok(()) => {
                for (committed, rows) in &staged {
                    tally(report, rows, committed);
                }
                last_kept
            }
            Err(error) => {
                tracing::error!(%error, "municipal import: staged chunks could not be written");
                report.fail(format!(
                    "the store could not write {} rows ({error}); every row before them is stored, none of them is",
                    staged_rows(&staged)
                ));
                false
            }
        }
    }

    /// Settle the last chunk: after a refused commit the chunk sent after it is not counted
    /// (a commit may still store it); in a bulk import what is staged is written and counted.
    fn finish(mut self, report: &mut ImportReport) {
        match self.delivery {
            Delivery::Commit => {
                if let Some(last) = self.in_flight.take()
                    && !self.refused
                {
                    self.settle(report, last);
                }
            }
            Delivery::Bulk { .. } => {
                self.write_staged(report);
            }
        }
    }
}

/// Rows of staged chunks.
fn staged_rows(staged: &[(Vec<Committed>, RowKeys)]) -> usize {
    staged.iter().map(|(_, rows)| rows.len()).sum()
}

/// The day a record is about (vaccination or check-up), for `since`.
fn record_day(record: &Value) -> Option<time::Date> {
    ["occurrenceDateTime", "period"]
        .iter()
        .find_map(|field| match record.get(*field) {
            Some(Value::String(text)) => mappers::immunization::full_date(text),
            Some(Value::Object(period)) => period
                .get("start")
                .and_then(Value::as_str)
                .and_then(mappers::immunization::full_date),
            _ => None,
        })
}

/// One resident's records with what export needs beside them (a check-up's Observations).
struct ResidentRecord {
    patient: Value,
    record: Value,
    observations: Vec<Value>,
}

/// The residents' records an export may carry, and how many it withheld.
struct ResidentRecords {
    records: Vec<ResidentRecord>,
    /// Records (rows) left out because the recipient may not receive them.
    withheld: usize,
}

/// Every record of the municipality's residents (Patients with its resident-number identifier),
/// wherever it was made, on or after `since`, as far as `exit` lets each leave: a record only
/// whole, a check-up's Observations each on their own. The Patient itself is not decided: it is
/// the municipality's own resident (found by its resident number), and a row names whose record
/// it is, which a record permitted to leave may say.
fn resident_records(
    state: &AppState,
    layout: &Layout,
    municipality: &MunicipalityCode,
    since: Option<time::Date>,
    exit: &mut Exit<'_, '_>,
) -> Result<ResidentRecords, ApiError> {
    let system = municipal::resident_identifier_system(municipality);
    let residents = search_all(
        state.store.as_ref(),
        "Patient",
        "identifier",
        &format!("{system}|"),
    )?;
    let record_type = layout.record_type();
    let store = state.store.as_ref();
    let mut out = Vec::new();
    let mut withheld = 0;
    for patient in residents {
        let Some(id) = patient.get("id").and_then(Value::as_str) else {
            continue;
        };
        let reference = format!("Patient/{id}");
        for stored in search_all_versions(store, record_type, "patient", &reference)? {
            let record = parse_stored(&stored)?;
            if since.is_some_and(|s| record_day(&record).is_none_or(|d| d < s)) {
                continue;
            }
            if !exit.permits(&stored)? {
                withheld += 1;
                continue;
            }
            let mut observations = Vec::new();
            if record_type == "Encounter" {
                let encounter = format!("Encounter/{}", stored.id);
                for result in search_all_versions(store, "Observation", "encounter", &encounter)? {
                    if exit.permits(&result)? {
                        observations.push(parse_stored(&result)?);
                    }
                }
            }
            out.push(ResidentRecord {
                patient: patient.clone(),
                record,
                observations,
            });
        }
    }
    Ok(ResidentRecords {
        records: out,
        withheld,
    })
}

/// An export: the file, how many rows it has and the records left out (with why).
pub struct Export {
    pub file: Vec<u8>,
    pub rows: usize,
    pub skipped: Vec<String>,
    /// Records the recipient may not receive: a number only, never which.
    pub withheld: usize,
}

/// The municipality's file from stored resources, in its layout and `encoding` (default: the
/// layout's), rows in the layout's canonical order: the operator's export (`musubi export`),
/// which the gateway itself makes, so nothing is consent-checked.
pub fn export(
    state: &AppState,
    layout: &Layout,
    municipality: &MunicipalityCode,
    since: Option<time::Date>,
    encoding: Option<Encoding>,
) -> Result<Export, ApiError> {
    export_decided(
        state,
        layout,
        municipality,
        since,
        encoding,
        &mut Exit::unchecked(),
    )
}

/// The export as the request's caller may receive it, audited (one AuditEvent per patient).
pub(crate) async fn export_for(
    ctx: &Ctx<'_>,
    layout: &Layout,
    municipality: &MunicipalityCode,
    since: Option<time::Date>,
    encoding: Option<Encoding>,
) -> Result<Export, ApiError> {
    let mut exit = Exit::open(ctx)?;
    let export = export_decided(ctx.state, layout, municipality, since, encoding, &mut exit)?;
    exit.close(Event::Export).await?;
    Ok(export)
}

fn export_decided(
    state: &AppState,
    layout: &Layout,
    municipality: &MunicipalityCode,
    since: Option<time::Date>,
    encoding: Option<Encoding>,
    exit: &mut Exit<'_, '_>,
) -> Result<Export, ApiError> {
    let ResidentRecords { records, withheld } =
        resident_records(state, layout, municipality, since, exit)?;
    let mut rows = Vec::with_capacity(records.len());
    let mut skipped = Vec::new();
    for r in &records {
        let record = ExportRecord {
            patient: &r.patient,
            record: &r.record,
            observations: &r.observations,
        };
        match municipal::export_row(layout, &record) {
            Ok(row) => rows.push(row),
            Err(e) => skipped.push(format!(
                "{}/{}: {}",
                layout.record_type(),
                r.record.get("id").and_then(Value::as_str).unwrap_or("?"),
                e.reason
            )),
        }
    }
    let count = rows.len();
    let file = render(layout, encoding.unwrap_or(layout.encoding()), rows);
    Ok(Export {
        file,
        rows: count,
        skipped,
        withheld,
    })
}

/// A file of `layout` from `export_row` rows (sort key, row), in the canonical order.
pub fn render(layout: &Layout, encoding: Encoding, mut rows: Vec<(String, String)>) -> Vec<u8> {
    rows.sort();
    municipal::export_file(layout, encoding, rows.into_iter().map(|(_, row)| row))
}

/// The `Content-Type` of a CSV file in `encoding`.
pub fn csv_content_type(encoding: Encoding) -> String {
    let charset = match encoding {
        Encoding::Cp932 => "Shift_JIS",
        Encoding::Utf8 | Encoding::Utf8Bom => "utf-8",
    };
    format!("text/csv; charset={charset}")
}

/// The JSON form of an export (PMH style), as the request's caller may receive it, with the
/// number of records withheld (`withheld`), audited like [`export_for`].
pub(crate) async fn export_json(
    ctx: &Ctx<'_>,
    layout: &Layout,
    municipality: &MunicipalityCode,
    since: Option<time::Date>,
) -> Result<Value, ApiError> {
    let mut exit = Exit::open(ctx)?;
    let ResidentRecords { records, withheld } =
        resident_records(ctx.state, layout, municipality, since, &mut exit)?;
    let borrowed: Vec<ExportRecord<'_>> = records
        .iter()
        .map(|r| ExportRecord {
            patient: &r.patient,
            record: &r.record,
            observations: &r.observations,
        })
        .collect();
    let mut answer = municipal::json_export(layout, &borrowed)
        .map_err(|e| ApiError::new(ErrorKind::Unprocessable, e.to_string()))?;
    exit.close(Event::Export).await?;
    if let Some(object) = answer.as_object_mut() {
        object.insert("withheld".to_owned(), json!(withheld));
    }
    Ok(answer)
}

/// The JSON form of an import (PMH style, `modificationSeg` "1" register/update, "2" delete):
/// every good record in one transaction, a result per record.
pub async fn import_json(
    state: &AppState,
    access: &Access,
    layout: &Layout,
    municipality: &MunicipalityCode,
    body: &[u8],
) -> Result<Value, ApiError> {
    let records = municipal::json_import(layout, municipality, body)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut results = Vec::with_capacity(records.len());
    let mut writes = Vec::new();
    let mut written: Vec<(usize, Vec<usize>)> = Vec::new();
    for record in records {
        let index = results.len();
        match record {
            Err(error) => results.push(json!({
                "record": error.line, "result": "rejected", "error": error.to_string(),
            })),
            Ok(record) => {
                let line = record.row.line;
                if !record.delete
                    && let Some(problem) = record
                        .row
                        .resources
                        .iter()
                        .find_map(|r| resource_problem(state, line, &r.resource))
                {
                    results.push(json!({
                        "record": line, "result": "rejected", "error": problem.reason,
                    }));
                    continue;
                }
                let mut positions = Vec::new();
                for mapped in record.row.resources {
                    positions.push(writes.len());
                    writes.push(Write {
                        resource_type: mapped.resource_type.to_owned(),
                        id: mapped.id,
                        precondition: Precondition::None,
                        action: if record.delete {
                            WriteAction::Delete
                        } else {
                            WriteAction::Put(mapped.resource)
                        },
                    });
                }
                written.push((index, positions));
                results.push(json!({"record": line, "key": record.row.key}));
            }
        }
    }
    // A Patient named by several records is written once, with the last record's content.
    let mut last: HashMap<(String, String), usize> = HashMap::new();
    for (i, w) in writes.iter().enumerate() {
        last.insert((w.resource_type.clone(), w.id.clone()), i);
    }
    let keep: Vec<usize> = {
        let mut keep: Vec<usize> = last.values().copied().collect();
        keep.sort_unstable();
        keep
    };
    let position_of: HashMap<usize, usize> =
        keep.iter().enumerate().map(|(p, &i)| (i, p)).collect();
    let mut unique: Vec<Write> = keep.iter().map(|&i| writes[i].clone()).collect();
    let committed = if unique.is_empty() {
        Vec::new()
    } else {
        // The AuditEvents go after the records, so the positions above still index `committed`.
        let events = crate::disclosure::bulk_write_audit(state, access, &unique)?;
        unique.extend(events);
        state.store.commit(unique).await?
    };
    for (index, positions) in written {
        let outcomes: Vec<WriteOutcome> = positions
            .iter()
            .filter_map(|p| {
                let key = (writes[*p].resource_type.clone(), writes[*p].id.clone());
                let at = last.get(&key)?;
                committed.get(*position_of.get(at)?).map(|c| c.outcome)
            })
            .collect();
        let result = if outcomes.iter().all(|o| *o == WriteOutcome::Unchanged) {
            "unchanged"
        } else if outcomes.contains(&WriteOutcome::Deleted) {
            "deleted"
        } else if outcomes.contains(&WriteOutcome::Created) {
            "created"
        } else {
            "updated"
        };
        results[index]["result"] = json!(result);
    }
    let count = |r: &str| results.iter().filter(|v| v["result"] == r).count();
    Ok(json!({
        "layout": layout.name(),
        "municipality": municipality.as_str(),
        "created": count("created"),
        "updated": count("updated"),
        "unchanged": count("unchanged"),
        "deleted": count("deleted"),
        "rejected": count("rejected"),
        "results": results,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::HistoryScope;

    const HEADER: &str = "宛名番号,氏名,氏名カナ,性別,生年月日,郵便番号,住所,個人番号,接種日,ワクチン種類,\
        医薬品コード,接種回数,ロット番号,接種医師名,医療機関コード,医療機関名,接種地自治体コード,登録日時";

    /// One row of the musubi-vaccination layout (the shape `gen_municipal_csv.py` writes).
    fn row(resident: u32, address: &str, day: &str, vaccine: &str, dose: u32) -> String {
        format!(
            "{resident:07},山田　花子,ヤマダ　ハナコ,2,20240110,102-8688,{address},,{day},{vaccine},,\
             {dose},LOT0001,佐藤　一郎,0110113719,こどもクリニック,131016,"
        )
    }

    fn file(rows: &[String]) -> String {
        format!("{HEADER}\n{}\n", rows.join("\n"))
    }

    fn offline_state(dir: &std::path::Path) -> AppState {
        let config = crate::config::Config::load(
            None,
            [
                ("MUSUBI__STORAGE__DATA_DIR", dir.display().to_string()),
                // Small chunks, so that a resident's rows span chunks and stagings.
                ("MUSUBI__MUNICIPAL__CHUNK_ROWS", "2".to_owned()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        )
        .unwrap();
        let store = crate::open_store_offline(&config).unwrap();
        let domain = crate::domain::Domain::load(None).unwrap();
        let access = crate::access::AccessState::load(&config, "http://localhost").unwrap();
        AppState::new(config, store, domain, access)
    }

    fn run(state: &AppState, delivery: Delivery, text: &str) -> Value {
        let municipality = MunicipalityCode::parse("131016").unwrap();
        let layout = layout(state, "musubi-vaccination", &municipality).unwrap();
        let report = import(
            state,
            &Access::Internal,
            &layout,
            &municipality,
            (text.as_bytes(), None, EncodingChoice::Auto),
            delivery,
            &mut |_| {},
        );
        let mut report = serde_json::to_value(&report).unwrap();
        report.as_object_mut().unwrap().remove("elapsedMs");
        report
    }

    /// Every stored version of every Patient and Immunization, the AuditEvents (without their
    /// random ids and times), searches by patient and date, and the export of the residents.
    fn stored(state: &AppState) -> Value {
        let store = state.store.as_ref();
        let mut out = serde_json::Map::new();
        for resource_type in ["Patient", "Immunization", "AuditEvent"] {
            let history = store
                .history(
                    &HistoryScope::Type(resource_type.into()),
                    None,
                    0,
                    usize::MAX,
                )
                .unwrap();
            let mut versions: Vec<Value> = history
                .versions
                .iter()
                .map(|version| {
                    let mut body: Value = serde_json::from_slice(&version.body).unwrap();
                    let object = body.as_object_mut().unwrap();
                    object["meta"]
                        .as_object_mut()
                        .unwrap()
                        .remove("lastUpdated");
                    if resource_type == "AuditEvent" {
                        object.remove("id");
                        object.remove("recorded");
                    }
                    json!({"id": (resource_type != "AuditEvent").then_some(&version.id),
                        "version": version.version, "body": body})
                })
                .collect();
            if resource_type == "AuditEvent" {
                versions.sort_by_key(Value::to_string);
            }
            out.insert(resource_type.to_owned(), json!(versions));
        }
        let municipality = MunicipalityCode::parse("131016").unwrap();
        let residents = format!("{}|", municipal::resident_identifier_system(&municipality));
        let patients = search_all(store, "Patient", "identifier", &residents).unwrap();
        for patient in patients {
            let reference = format!("Patient/{}", patient["id"].as_str().unwrap());
            let doses = search_all(store, "Immunization", "patient", &reference).unwrap();
            let ids: Vec<&Value> = doses.iter().map(|d| &d["id"]).collect();
            out.insert(reference, json!(ids));
        }
        let on_day = search_all(store, "Immunization", "date", "2024-03-12").unwrap();
        out.insert("date".into(), json!(on_day.len()));
        let layout = layout(state, "musubi-vaccination", &municipality).unwrap();
        let exported = export(state, &layout, &municipality, None, None).unwrap();
        out.insert(
            "export".into(),
            json!(String::from_utf8(exported.file).unwrap()),
        );
        Value::Object(out)
    }

    #[test]
    fn a_bulk_import_stores_and_reports_what_a_committed_import_does() {
        let home = "東京都千代田区九段南1-2-1";
        let first = file(&[
            row(1, home, "20240312", "dpt-ipv-hib", 1),
            row(1, home, "20240409", "dpt-ipv-hib", 2),
            row(1, home, "20240312", "pcv", 1),
            row(2, home, "20240312", "hepb", 1),
            row(2, home, "20241340", "hepb", 2),
            row(2, home, "20240618", "bcg", 1),
            row(3, home, "20240312", "pcv", 1),
        ]);
        // A resident moves and gets another dose; a new resident; a resident unchanged.
        let second = file(&[
            row(1, "東京都千代田区一番町1", "20240507", "dpt-ipv-hib", 3),
            row(4, home, "20240312", "hepb", 1),
            row(3, home, "20240312", "pcv", 1),
        ]);
        // Long enough for several writes of staged tables within one file.
        let many = file(
            &(0..30u32)
                .map(|i| {
                    let vaccine = ["dpt-ipv-hib", "pcv", "hepb"][(i / 10) as usize];
                    row(10 + i % 10, home, "20240312", vaccine, 1)
                })
                .collect::<Vec<_>>(),
        );
        let committed_dir = tempfile::tempdir().unwrap();
        let bulk_dir = tempfile::tempdir().unwrap();
        let committed = offline_state(committed_dir.path());
        let bulk = offline_state(bulk_dir.path());
        // Written every third row: stagings end inside chunks and inside a resident's rows.
        let staged = Delivery::Bulk { rows: 3 };
        let mut reports = Vec::new();
        for text in [&first, &first, &second, &many] {
            let report = run(&committed, Delivery::Commit, text);
            assert_eq!(run(&bulk, staged, text), report);
            assert_eq!(stored(&bulk), stored(&committed));
            reports.push(report);
        }
        // Importing the same file again changes nothing and reports the same bad line.
        let reimport = &reports[1];
        assert_eq!(reimport["rowsImported"], 0, "{reimport}");
        assert_eq!(reimport["rowsUnchanged"], 6, "{reimport}");
        assert_eq!(reimport["rowsRejected"], 1, "{reimport}");
        assert_eq!(reimport["errors"][0]["line"], 6, "{reimport}");
        // The resident already stored who moved is updated, not created again.
        assert_eq!(reports[2]["resourcesCreated"], 3, "{}", reports[2]);
        assert_eq!(reports[2]["resourcesUpdated"], 1, "{}", reports[2]);
        assert_eq!(reports[3]["rowsImported"], 30, "{}", reports[3]);
        let stored = stored(&bulk);
        // Four residents of the first files (p1 twice) and ten of the long one.
        assert_eq!(stored["Patient"].as_array().unwrap().len(), 15);
        let searched = stored.as_object().unwrap().keys();
        assert_eq!(searched.filter(|k| k.starts_with("Patient/")).count(), 14);
        assert_ne!(stored["date"], 0);
        for state in [committed, bulk] {
            futures_executor::block_on(state.store.shutdown()).unwrap();
        }
    }
}
