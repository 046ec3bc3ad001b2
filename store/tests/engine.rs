//! The embedded store through its public API: atomic commits, preconditions inside one commit
//! group, index maintenance, history, and what survives reopening the data directory.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use store::{
    Covered, CoveringIndex, FjallStore, HistoryScope, Precondition, SearchRequest, Store,
    StoreError, StoreOptions, Write, WriteAction, WriteOutcome,
};

fn open(dir: &Path) -> FjallStore {
    FjallStore::open(dir, &StoreOptions::default()).unwrap()
}

/// Open `dir` again after a store of it was dropped without shutdown. Its writer finishes what
/// was queued (and its final flush) on its own thread and only then lets go of the directory's
/// lock, so the open may find the directory still locked for a moment.
fn open_after_drop(dir: &Path) -> FjallStore {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match FjallStore::open(dir, &StoreOptions::default()) {
            Ok(store) => return store,
            Err(error)
                if error.to_string().contains("Locked") && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(error) => panic!("cannot open {}: {error}", dir.display()),
        }
    }
}

fn put(rt: &str, id: &str, precondition: Precondition, resource: Value) -> Write {
    Write {
        resource_type: rt.into(),
        id: id.into(),
        precondition,
        action: WriteAction::Put(resource),
    }
}

fn patient(id: &str, family: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "name": [{"family": family}]})
}

fn immunization(id: &str, patient: &str) -> Value {
    json!({
        "resourceType": "Immunization", "id": id, "status": "completed",
        "vaccineCode": {"text": "x"}, "patient": {"reference": patient},
        "occurrenceDateTime": "2024-06-03"
    })
}

fn search_ids(store: &FjallStore, rt: &str, params: &[(&str, &str)]) -> Vec<String> {
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let query = search::parse_query(search::Registry::r4(), rt, &params, true).unwrap();
    let page = store
        .search(&SearchRequest {
            resource_type: rt,
            query: &query,
            offset: 0,
            count: 100,
            need_total: true,
        })
        .unwrap();
    let mut ids: Vec<String> = page.matches.into_iter().map(|v| v.id).collect();
    ids.sort();
    ids
}

fn body(store: &FjallStore, rt: &str, id: &str) -> Value {
    let version = store.read(rt, id).unwrap().unwrap();
    serde_json::from_slice(&version.body).unwrap()
}

#[tokio::test]
async fn commits_are_read_back_with_meta_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let created = store
        .commit(vec![put(
            "Patient",
            "p1",
            Precondition::MustNotExist,
            patient("p1", "Yamada"),
        )])
        .await
        .unwrap();
    assert_eq!(created[0].outcome, WriteOutcome::Created);
    assert_eq!(created[0].version.version, 1);
    let stored = body(&store, "Patient", "p1");
    assert_eq!(stored["meta"]["versionId"], "1");
    assert_eq!(stored["name"][0]["family"], "Yamada");

    // The same content again changes nothing; new content makes version 2.
    let same = store
        .commit(vec![put(
            "Patient",
            "p1",
            Precondition::None,
            patient("p1", "Yamada"),
        )])
        .await
        .unwrap();
    assert_eq!(same[0].outcome, WriteOutcome::Unchanged);
    assert_eq!(same[0].version.version, 1);
    let updated = store
        .commit(vec![put(
            "Patient",
            "p1",
            Precondition::VersionIs(1),
            patient("p1", "Suzuki"),
        )])
        .await
        .unwrap();
    assert_eq!(updated[0].outcome, WriteOutcome::Updated);
    assert_eq!(store.read("Patient", "p1").unwrap().unwrap().version, 2);
    let v1 = store.vread("Patient", "p1", 1).unwrap().unwrap();
    let v1: Value = serde_json::from_slice(&v1.body).unwrap();
    assert_eq!(v1["name"][0]["family"], "Yamada");
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_failed_precondition_rolls_back_its_whole_transaction_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    store
        .commit(vec![put(
            "Patient",
            "taken",
            Precondition::None,
            patient("taken", "A"),
        )])
        .await
        .unwrap();
    // Queued back to back (each `commit` enqueues before it is awaited), so the writer usually
    // takes them as one group; the outcome must be the same either way.
    let failing = store.commit(vec![
        put(
            "Patient",
            "new-1",
            Precondition::None,
            patient("new-1", "B"),
        ),
        put(
            "Patient",
            "taken",
            Precondition::MustNotExist,
            patient("taken", "C"),
        ),
    ]);
    let passing = store.commit(vec![put(
        "Patient",
        "new-2",
        Precondition::None,
        patient("new-2", "D"),
    )]);
    let conflicting = store.commit(vec![put(
        "Patient",
        "taken",
        Precondition::VersionIs(7),
        patient("taken", "E"),
    )]);
    let (failing, passing, conflicting) = tokio::join!(failing, passing, conflicting);
    assert!(matches!(
        failing,
        Err(StoreError::AlreadyExists { version: 1, .. })
    ));
    assert!(matches!(
        conflicting,
        Err(StoreError::VersionConflict {
            expected: 7,
            current: Some(1),
            ..
        })
    ));
    assert_eq!(passing.unwrap()[0].outcome, WriteOutcome::Created);
    assert!(store.read("Patient", "new-1").unwrap().is_none());
    assert_eq!(body(&store, "Patient", "taken")["name"][0]["family"], "A");
    let history = store.history(&HistoryScope::System, None, 0, 10).unwrap();
    let ids: Vec<&str> = history.versions.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["new-2", "taken"]);
}

#[tokio::test]
async fn writes_in_one_group_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // The second is enqueued before the first is acknowledged: whether the writer takes both
    // as one group or not, the second must see the first.
    let first = store.commit(vec![put(
        "Patient",
        "p1",
        Precondition::MustNotExist,
        patient("p1", "A"),
    )]);
    let second = store.commit(vec![put(
        "Patient",
        "p1",
        Precondition::VersionIs(1),
        patient("p1", "B"),
    )]);
    let (first, second) = tokio::join!(first, second);
    assert_eq!(first.unwrap()[0].version.version, 1);
    assert_eq!(second.unwrap()[0].version.version, 2);
    // The update replaced the index entries written earlier in the same group.
    assert_eq!(search_ids(&store, "Patient", &[("family", "B")]), ["p1"]);
    assert!(search_ids(&store, "Patient", &[("family", "A")]).is_empty());
}

#[tokio::test]
async fn index_entries_follow_updates_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .commit(vec![
            put(
                "Immunization",
                "i1",
                Precondition::None,
                immunization("i1", "Patient/p1"),
            ),
            put(
                "Immunization",
                "i2",
                Precondition::None,
                immunization("i2", "Patient/p10"),
            ),
        ])
        .await
        .unwrap();
    assert_eq!(
        search_ids(&store, "Immunization", &[("patient", "Patient/p1")]),
        ["i1"]
    );
    store
        .commit(vec![put(
            "Immunization",
            "i1",
            Precondition::None,
            immunization("i1", "Patient/p2"),
        )])
        .await
        .unwrap();
    assert!(search_ids(&store, "Immunization", &[("patient", "Patient/p1")]).is_empty());
    assert_eq!(
        search_ids(&store, "Immunization", &[("patient", "Patient/p2")]),
        ["i1"]
    );
    let deleted = store
        .commit(vec![Write {
            resource_type: "Immunization".into(),
            id: "i1".into(),
            precondition: Precondition::None,
            action: WriteAction::Delete,
        }])
        .await
        .unwrap();
    assert_eq!(deleted[0].outcome, WriteOutcome::Deleted);
    assert!(search_ids(&store, "Immunization", &[("patient", "Patient/p2")]).is_empty());
    assert_eq!(search_ids(&store, "Immunization", &[]), ["i2"]);
    assert!(
        store
            .read("Immunization", "i1")
            .unwrap()
            .unwrap()
            .is_deleted()
    );
    // Recreating after a delete (version 3) is a create of version 4.
    let again = store
        .commit(vec![put(
            "Immunization",
            "i1",
            Precondition::MustNotExist,
            immunization("i1", "Patient/p3"),
        )])
        .await
        .unwrap();
    assert_eq!(again[0].outcome, WriteOutcome::Created);
    assert_eq!(again[0].version.version, 4);
    let history = store
        .history(
            &HistoryScope::Instance("Immunization".into(), "i1".into()),
            None,
            0,
            10,
        )
        .unwrap();
    let versions: Vec<u64> = history.versions.iter().map(|v| v.version).collect();
    assert_eq!(versions, [4, 3, 2, 1]);
}

#[tokio::test]
async fn acknowledged_writes_survive_reopen_with_and_without_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store
            .commit(vec![put(
                "Patient",
                "clean",
                Precondition::None,
                patient("clean", "A"),
            )])
            .await
            .unwrap();
        store.shutdown().await.unwrap();
        assert!(store.ready().is_err());
        assert!(matches!(
            store
                .commit(vec![put(
                    "Patient",
                    "late",
                    Precondition::None,
                    patient("late", "B")
                )])
                .await,
            Err(StoreError::Unavailable(_))
        ));
        // Reads still work after shutdown.
        assert!(store.read("Patient", "clean").unwrap().is_some());
    }
    {
        let store = open(dir.path());
        assert!(store.ready().is_ok());
        assert_eq!(body(&store, "Patient", "clean")["name"][0]["family"], "A");
        store
            .commit(vec![put(
                "Patient",
                "dropped",
                Precondition::None,
                patient("dropped", "C"),
            )])
            .await
            .unwrap();
        // Dropped without shutdown: the acknowledged write is already in the synced journal.
    }
    let store = open_after_drop(dir.path());
    assert_eq!(body(&store, "Patient", "dropped")["name"][0]["family"], "C");
    assert!(store.read("Patient", "late").unwrap().is_none());
    // The change log continues after the last sequence number instead of overwriting it.
    store
        .commit(vec![put(
            "Patient",
            "third",
            Precondition::None,
            patient("third", "D"),
        )])
        .await
        .unwrap();
    let history = store
        .history(&HistoryScope::Type("Patient".into()), None, 0, 10)
        .unwrap();
    let ids: Vec<&str> = history.versions.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["third", "dropped", "clean"]);
}

#[test]
fn a_sled_data_directory_is_refused_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sled")).unwrap();
    let error = FjallStore::open(dir.path(), &StoreOptions::default())
        .err()
        .unwrap();
    assert!(error.to_string().contains("sled"), "{error}");
}

#[tokio::test]
async fn reference_searches_answered_from_the_index_alone_match_verified_ones() {
    // `patient=Patient/p1` alone is decided by the index seek (no entries loaded); adding a
    // criterion every resource meets (`status=completed`) makes the search verify each
    // candidate. Both must find the same resources, including after updates and deletes.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let writes = [
        ("i1", "Patient/p1"),
        ("i2", "Patient/p10"),
        ("i3", "Patient/p1"),
        ("i4", "Patient/p1/_history/2"),
        // Stored normalised to `Patient/p1` (search::extract keeps the type/id of URLs).
        ("i5", "https://elsewhere.example/fhir/Patient/p1"),
        ("i6", "Group/p1"),
        ("i7", "Patient/p2"),
    ];
    store
        .commit(
            writes
                .iter()
                .map(|(id, patient)| {
                    put(
                        "Immunization",
                        id,
                        Precondition::None,
                        immunization(id, patient),
                    )
                })
                .collect(),
        )
        .await
        .unwrap();
    store
        .commit(vec![
            put(
                "Immunization",
                "i3",
                Precondition::None,
                immunization("i3", "Patient/p2"),
            ),
            Write {
                resource_type: "Immunization".into(),
                id: "i7".into(),
                precondition: Precondition::None,
                action: WriteAction::Delete,
            },
        ])
        .await
        .unwrap();
    // (patient criterion, expected ids)
    let cases: &[(&str, &[&str])] = &[
        ("Patient/p1", &["i1", "i4", "i5"]),
        ("Patient/p2", &["i3"]),
        ("Patient/p10", &["i2"]),
        ("Patient/p1,Patient/p10", &["i1", "i2", "i4", "i5"]),
        ("Patient/p3", &[]),
    ];
    for (patient, expected) in cases {
        let alone = search_ids(&store, "Immunization", &[("patient", patient)]);
        let verified = search_ids(
            &store,
            "Immunization",
            &[("patient", patient), ("status", "completed")],
        );
        assert_eq!(alone, *expected, "patient={patient}");
        assert_eq!(verified, *expected, "patient={patient} with status");
    }
    // Criteria the seek does not decide still verify (an id without a type, :missing).
    assert_eq!(
        search_ids(&store, "Immunization", &[("patient", "p1")]),
        ["i1", "i4", "i5"]
    );
    assert!(search_ids(&store, "Immunization", &[("patient:missing", "true")]).is_empty());
}

#[tokio::test]
async fn every_version_stays_readable_when_the_current_one_is_kept_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let family = |v: &store::StoredVersion| -> String {
        let body: Value = serde_json::from_slice(&v.body).unwrap();
        body["name"][0]["family"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    store
        .commit(vec![put(
            "Patient",
            "p1",
            Precondition::MustNotExist,
            patient("p1", "A"),
        )])
        .await
        .unwrap();
    // Version 1 is current: vread finds it under its current key.
    assert_eq!(
        family(&store.vread("Patient", "p1", 1).unwrap().unwrap()),
        "A"
    );
    assert!(store.vread("Patient", "p1", 2).unwrap().is_none());
    // Two versions in one commit group, then a deletion and a re-creation.
    let (b, c) = tokio::join!(
        store.commit(vec![put(
            "Patient",
            "p1",
            Precondition::VersionIs(1),
            patient("p1", "B")
        )]),
        store.commit(vec![put(
            "Patient",
            "p1",
            Precondition::VersionIs(2),
            patient("p1", "C")
        )]),
    );
    assert_eq!(b.unwrap()[0].version.version, 2);
    assert_eq!(c.unwrap()[0].version.version, 3);
    let deleted = store
        .commit(vec![Write {
            resource_type: "Patient".into(),
            id: "p1".into(),
            precondition: Precondition::None,
            action: WriteAction::Delete,
        }])
        .await
        .unwrap();
    assert_eq!(deleted[0].version.version, 4);
    assert!(
        store
            .vread("Patient", "p1", 4)
            .unwrap()
            .unwrap()
            .is_deleted()
    );
    store
        .commit(vec![put(
            "Patient",
            "p1",
            Precondition::None,
            patient("p1", "E"),
        )])
        .await
        .unwrap();

    assert_every_version(&store);
    store.shutdown().await.unwrap();
    drop(store);
    assert_every_version(&open(dir.path()));
}

/// The five versions the test above wrote, through vread, instance history and type history.
fn assert_every_version(store: &FjallStore) {
    let family = |v: &store::StoredVersion| -> String {
        let body: Value = serde_json::from_slice(&v.body).unwrap_or_default();
        body["name"][0]["family"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let expected: Vec<(u64, String)> = [(5, "E"), (4, ""), (3, "C"), (2, "B"), (1, "A")]
        .iter()
        .map(|(v, n)| (*v, (*n).to_owned()))
        .collect();
    for (version, name) in &expected {
        let v = store.vread("Patient", "p1", *version).unwrap().unwrap();
        assert_eq!(
            (v.version, family(&v)),
            (*version, name.clone()),
            "vread {version}"
        );
    }
    let history = store
        .history(
            &HistoryScope::Instance("Patient".into(), "p1".into()),
            None,
            0,
            10,
        )
        .unwrap();
    let listed: Vec<(u64, String)> = history
        .versions
        .iter()
        .map(|v| (v.version, family(v)))
        .collect();
    assert_eq!((history.total, listed), (5, expected));
    // Type history goes through the change log and vread: every version once.
    let by_type = store
        .history(&HistoryScope::Type("Patient".into()), None, 0, 10)
        .unwrap();
    assert_eq!(by_type.total, 5);
}

#[tokio::test]
async fn write_generations_grow_with_each_change_of_their_type_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(store.write_generation("Consent"), 0);
    let consent = json!({"resourceType": "Consent", "id": "c1", "status": "active"});
    store
        .commit(vec![put(
            "Consent",
            "c1",
            Precondition::None,
            consent.clone(),
        )])
        .await
        .unwrap();
    // Visible by the time the commit is acknowledged.
    assert_eq!(store.write_generation("Consent"), 1);
    assert_eq!(store.write_generation("Patient"), 0);
    // A write that changes nothing leaves it as it is; another type's write too.
    store
        .commit(vec![put("Consent", "c1", Precondition::None, consent)])
        .await
        .unwrap();
    store
        .commit(vec![put(
            "Patient",
            "p1",
            Precondition::None,
            patient("p1", "A"),
        )])
        .await
        .unwrap();
    assert_eq!(store.write_generation("Consent"), 1);
    assert_eq!(store.write_generation("Patient"), 1);
    store
        .commit(vec![Write {
            resource_type: "Consent".into(),
            id: "c1".into(),
            precondition: Precondition::None,
            action: WriteAction::Delete,
        }])
        .await
        .unwrap();
    assert_eq!(store.write_generation("Consent"), 2);
}

static IDLE_RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn count_idle_run() {
    IDLE_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// Waits (up to a generous deadline, polling) until the idle work has run `runs` times.
fn wait_for_idle_runs(runs: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while IDLE_RUNS.load(std::sync::atomic::Ordering::SeqCst) < runs {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer's idle work did not run {runs} times"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A covering index on Immunization `patient`; `meta` is covered to show that the
/// server-assigned part of it is left out.
fn open_covering(dir: &Path, members: &[&str]) -> FjallStore {
    let options = StoreOptions {
        covering: vec![CoveringIndex {
            resource_type: "Immunization".into(),
            param: "patient".into(),
            members: members.iter().map(|m| (*m).to_owned()).collect(),
        }],
        ..StoreOptions::default()
    };
    FjallStore::open(dir, &options).unwrap()
}

const COVERED: &[&str] = &["status", "vaccineCode", "meta", "protocolApplied"];

fn patient_doses(store: &FjallStore, patient: &str) -> Vec<Covered> {
    let value = search::IndexValue::Reference(patient.to_owned());
    store.covered("Immunization", "patient", &value).unwrap()
}

/// The named members of a stored body, as a covering index should hold them.
fn expected_members(store: &FjallStore, id: &str, names: &[&str]) -> Value {
    let body = body(store, "Immunization", id);
    let mut members = serde_json::Map::new();
    for name in names {
        let Some(mut value) = body.get(*name).cloned() else {
            continue;
        };
        if *name == "meta" {
            let meta = value.as_object_mut().unwrap();
            meta.shift_remove("versionId");
            meta.shift_remove("lastUpdated");
            if meta.is_empty() {
                continue;
            }
        }
        members.insert((*name).to_owned(), value);
    }
    Value::Object(members)
}

fn assert_covered_equal_bodies(store: &FjallStore, patient: &str, ids: &[&str], names: &[&str]) {
    let covered = patient_doses(store, patient);
    let found: Vec<&str> = covered.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(found, ids, "{patient}");
    for entry in &covered {
        let members: Value = serde_json::from_slice(&entry.members).unwrap();
        assert_eq!(
            members,
            expected_members(store, &entry.id, names),
            "{}",
            entry.id
        );
    }
}

fn profiled_immunization(id: &str, patient: &str, status: &str) -> Value {
    let mut resource = immunization(id, patient);
    resource["status"] = json!(status);
    resource["meta"] = json!({"profile": ["http://example.org/StructureDefinition/x"]});
    resource["protocolApplied"] = json!([{"doseNumberPositiveInt": 2}]);
    resource
}

fn delete(rt: &str, id: &str) -> Write {
    Write {
        resource_type: rt.into(),
        id: id.into(),
        precondition: Precondition::None,
        action: WriteAction::Delete,
    }
}

#[tokio::test]
async fn the_writer_runs_its_idle_work_once_per_idle_period() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        when_idle: Some(store::WhenIdle {
            after: std::time::Duration::from_millis(30),
            run: count_idle_run,
        }),
        ..StoreOptions::default()
    };
    let store = FjallStore::open(dir.path(), &options).unwrap();
    wait_for_idle_runs(1);
    // Idle for many more periods: still once.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(IDLE_RUNS.load(std::sync::atomic::Ordering::SeqCst), 1);
    let write = put("Patient", "p1", Precondition::None, patient("p1", "Yamada"));
    store.commit(vec![write]).await.unwrap();
    wait_for_idle_runs(2);
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn covering_entries_hold_the_members_of_the_current_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_covering(dir.path(), COVERED);
    let imm = |id: &str, patient: &str, status: &str| {
        put(
            "Immunization",
            id,
            Precondition::None,
            profiled_immunization(id, patient, status),
        )
    };
    store
        .commit(vec![
            imm("i1", "Patient/p1", "completed"),
            put(
                "Immunization",
                "i2",
                Precondition::None,
                immunization("i2", "Patient/p1"),
            ),
            imm("i3", "Patient/p10", "completed"),
        ])
        .await
        .unwrap();
    assert_covered_equal_bodies(&store, "Patient/p1", &["i1", "i2"], COVERED);
    let first = patient_doses(&store, "Patient/p1");

    // An update changes the covered members; a move to another patient moves the entry.
    store
        .commit(vec![
            imm("i1", "Patient/p1", "entered-in-error"),
            imm("i2", "Patient/p2", "completed"),
        ])
        .await
        .unwrap();
    assert_covered_equal_bodies(&store, "Patient/p1", &["i1"], COVERED);
    assert_covered_equal_bodies(&store, "Patient/p2", &["i2"], COVERED);
    assert_ne!(
        patient_doses(&store, "Patient/p1")[0].members,
        first[0].members
    );

    store
        .commit(vec![delete("Immunization", "i1")])
        .await
        .unwrap();
    assert!(patient_doses(&store, "Patient/p1").is_empty());
    assert_covered_equal_bodies(&store, "Patient/p10", &["i3"], COVERED);

    // Only declared pairs are covered.
    let other = store.covered(
        "Immunization",
        "vaccine-code",
        &search::IndexValue::Reference("x".into()),
    );
    assert!(matches!(other, Err(StoreError::Invalid(_))), "{other:?}");
}

#[tokio::test]
async fn entries_written_without_the_declaration_are_covered_from_the_body() {
    let writes = || {
        vec![
            put(
                "Immunization",
                "i1",
                Precondition::None,
                profiled_immunization("i1", "Patient/p1", "completed"),
            ),
            put(
                "Immunization",
                "i2",
                Precondition::None,
                immunization("i2", "Patient/p1"),
            ),
            put(
                "Immunization",
                "i3",
                Precondition::None,
                immunization("i3", "Patient/p1"),
            ),
        ]
    };
    // A store written by a build that declared nothing: its entries hold empty values.
    let old_dir = tempfile::tempdir().unwrap();
    {
        let old = open(old_dir.path());
        old.commit(writes()).await.unwrap();
        old.commit(vec![delete("Immunization", "i3")])
            .await
            .unwrap();
        old.shutdown().await.unwrap();
    }
    let reopened = open_covering(old_dir.path(), COVERED);
    assert_covered_equal_bodies(&reopened, "Patient/p1", &["i1", "i2"], COVERED);

    // The same writes under the declaration give the same answer, byte for byte.
    let new_dir = tempfile::tempdir().unwrap();
    let covering = open_covering(new_dir.path(), COVERED);
    covering.commit(writes()).await.unwrap();
    covering
        .commit(vec![delete("Immunization", "i3")])
        .await
        .unwrap();
    assert_eq!(
        patient_doses(&covering, "Patient/p1"),
        patient_doses(&reopened, "Patient/p1")
    );
    covering.shutdown().await.unwrap();
    drop(covering);

    // Entries written under another member list are not served as if they held this one.
    let changed = ["status", "occurrenceDateTime"];
    let redeclared = open_covering(new_dir.path(), &changed);
    assert_covered_equal_bodies(&redeclared, "Patient/p1", &["i1", "i2"], &changed);
}

#[tokio::test]
async fn a_write_under_a_new_id_is_stored_like_a_checked_create() {
    // `NewId` skips looking for a current version; everything it stores must equal what a
    // create checked with `MustNotExist` stores, and later updates and deletes must find it.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let committed = store
        .commit(vec![
            put(
                "Immunization",
                "checked",
                Precondition::MustNotExist,
                immunization("checked", "Patient/p1"),
            ),
            put(
                "Immunization",
                "fresh",
                Precondition::NewId,
                immunization("fresh", "Patient/p1"),
            ),
        ])
        .await
        .unwrap();
    let (checked, fresh) = (&committed[0], &committed[1]);
    assert_eq!(fresh.outcome, WriteOutcome::Created);
    assert_eq!(fresh.outcome, checked.outcome);
    assert_eq!(fresh.version.version, checked.version.version);
    assert_eq!(fresh.version.method, checked.version.method);
    assert_eq!(
        fresh.version.last_updated_ms,
        checked.version.last_updated_ms
    );
    let mut checked_body = body(&store, "Immunization", "checked");
    checked_body["id"] = json!("fresh");
    assert_eq!(body(&store, "Immunization", "fresh"), checked_body);
    assert_eq!(
        search_ids(
            &store,
            "Immunization",
            &[("patient", "Patient/p1"), ("date", "2024-06-03")]
        ),
        ["checked", "fresh"]
    );

    // Its index entries are maintained like any other's.
    store
        .commit(vec![put(
            "Immunization",
            "fresh",
            Precondition::VersionIs(1),
            immunization("fresh", "Patient/p2"),
        )])
        .await
        .unwrap();
    assert_eq!(
        search_ids(&store, "Immunization", &[("patient", "Patient/p2")]),
        ["fresh"]
    );
    assert_eq!(
        search_ids(&store, "Immunization", &[("patient", "Patient/p1")]),
        ["checked"]
    );
    store
        .commit(vec![Write {
            resource_type: "Immunization".into(),
            id: "fresh".into(),
            precondition: Precondition::None,
            action: WriteAction::Delete,
        }])
        .await
        .unwrap();
    assert!(search_ids(&store, "Immunization", &[("patient", "Patient/p2")]).is_empty());
    let history = store
        .history(
            &HistoryScope::Instance("Immunization".into(), "fresh".into()),
            None,
            0,
            10,
        )
        .unwrap();
    assert_eq!(history.total, 3);
}

fn audit_event(id: &str, patient: &str, interaction: &str, recorded: &str) -> Value {
    json!({
        "resourceType": "AuditEvent", "id": id, "action": "R", "recorded": recorded, "outcome": "0",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": interaction}],
        "agent": [{"who": {"identifier": {"system": "urn:client", "value": "demo-clinic"}}, "requestor": true}],
        "source": {"site": "Musubi", "observer": {"display": "Musubi"}},
        "entity": [
            {"what": {"reference": patient}, "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"}},
            {"what": {"reference": "Immunization/i1/_history/1"}, "detail": [{"type": "decision", "valueString": "permit"}]}
        ]
    })
}

fn search_in_order(store: &FjallStore, rt: &str, params: &[(&str, &str)]) -> Vec<String> {
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let query = search::parse_query(search::Registry::r4(), rt, &params, true).unwrap();
    let request = SearchRequest {
        resource_type: rt,
        query: &query,
        offset: 0,
        count: 100,
        need_total: true,
    };
    let page = store.search(&request).unwrap();
    assert_eq!(page.total, Some(page.matches.len()), "{params:?}");
    page.matches.into_iter().map(|v| v.id).collect()
}

#[tokio::test]
async fn audit_events_are_searched_sorted_updated_and_deleted_without_a_stored_entries_blob() {
    // AuditEvents keep no entries blob (store/src/entries.rs): searches that verify several
    // criteria or sort, and updates and deletes that must remove the old index keys, recompute
    // the entries from the stored body.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let events = [
        ("a1", "Patient/p1", "read", "2025-05-01T10:00:00Z"),
        ("a2", "Patient/p1", "search-type", "2025-05-02T10:00:00Z"),
        ("a3", "Patient/p2", "read", "2025-05-03T10:00:00Z"),
    ];
    store
        .commit(
            events
                .iter()
                .map(|(id, patient, interaction, recorded)| {
                    put(
                        "AuditEvent",
                        id,
                        Precondition::NewId,
                        audit_event(id, patient, interaction, recorded),
                    )
                })
                .collect(),
        )
        .await
        .unwrap();
    let search = |params: &[(&str, &str)]| search_in_order(&store, "AuditEvent", params);
    assert_eq!(
        search(&[("patient", "Patient/p1"), ("subtype", "read")]),
        ["a1"]
    );
    assert_eq!(
        search(&[("entity", "Immunization/i1"), ("_sort", "-date")]),
        ["a3", "a2", "a1"]
    );
    assert_eq!(
        search(&[("patient", "Patient/p1"), ("date", "ge2025-05-02")]),
        ["a2"]
    );
    assert_eq!(
        search(&[("subtype", "read"), ("_sort", "date")]),
        ["a1", "a3"]
    );

    // An update moves a1 to p2: the index keys of p1 go with the old version.
    store
        .commit(vec![put(
            "AuditEvent",
            "a1",
            Precondition::VersionIs(1),
            audit_event("a1", "Patient/p2", "read", "2025-05-01T10:00:00Z"),
        )])
        .await
        .unwrap();
    assert_eq!(search(&[("patient", "Patient/p1")]), ["a2"]);
    assert_eq!(
        search(&[
            ("patient", "Patient/p2"),
            ("subtype", "read"),
            ("_sort", "date")
        ]),
        ["a1", "a3"]
    );

    // A delete removes every index key of the deleted version.
    store
        .commit(vec![Write {
            resource_type: "AuditEvent".into(),
            id: "a2".into(),
            precondition: Precondition::None,
            action: WriteAction::Delete,
        }])
        .await
        .unwrap();
    assert!(search(&[("patient", "Patient/p1")]).is_empty());
    assert!(search(&[("subtype", "search-type")]).is_empty());
    assert_eq!(
        search(&[("entity", "Immunization/i1"), ("_sort", "date")]),
        ["a1", "a3"]
    );
    store.shutdown().await.unwrap();
    drop(store);

    let store = open(dir.path());
    assert_eq!(
        search_in_order(
            &store,
            "AuditEvent",
            &[("site", "Musubi"), ("_sort", "-date")]
        ),
        ["a3", "a1"]
    );
}

/// The transactions the staged-write tests write: creates, an unchanged re-write, updates
/// (one of covered members), a delete, AuditEvents (kept without an entries blob), and a
/// transaction refused by its precondition.
fn bulk_transactions() -> Vec<Vec<Write>> {
    let none = Precondition::None;
    let mut changed = profiled_immunization("i1", "Patient/p1", "entered-in-error");
    changed["lotNumber"] = json!("L2");
    vec![
        vec![
            put("Patient", "p1", none, patient("p1", "山田")),
            put("Patient", "p2", none, patient("p2", "佐藤")),
            put(
                "Immunization",
                "i1",
                none,
                profiled_immunization("i1", "Patient/p1", "completed"),
            ),
            put("Immunization", "i2", none, immunization("i2", "Patient/p2")),
            put(
                "AuditEvent",
                "a1",
                none,
                audit_event("a1", "Patient/p1", "create", "2025-05-01T10:00:00Z"),
            ),
        ],
        vec![
            put("Patient", "p1", none, patient("p1", "山田")),
            put("Immunization", "i1", none, changed),
            put("Immunization", "i3", none, immunization("i3", "Patient/p1")),
            put("Patient", "p3", none, patient("p3", "鈴木")),
        ],
        vec![
            delete("Immunization", "i2"),
            put("Patient", "p2", none, patient("p2", "高橋")),
            put("Patient", "p3", none, patient("p3", "田中")),
            put(
                "Immunization",
                "i3",
                none,
                profiled_immunization("i3", "Patient/p2", "not-done"),
            ),
            put(
                "AuditEvent",
                "a1",
                none,
                audit_event("a1", "Patient/p2", "update", "2025-05-02T10:00:00Z"),
            ),
        ],
        vec![
            put("Patient", "p4", none, patient("p4", "伊藤")),
            put(
                "Patient",
                "p1",
                Precondition::MustNotExist,
                patient("p1", "X"),
            ),
        ],
    ]
}

/// What a client can learn of the stored resources, with `meta.lastUpdated` (the time of the
/// write) left out: every version, histories, searches and covered members.
fn everything_readable(store: &FjallStore) -> Value {
    let ids = [
        ("Patient", "p1"),
        ("Patient", "p2"),
        ("Patient", "p3"),
        ("Patient", "p4"),
        ("Immunization", "i1"),
        ("Immunization", "i2"),
        ("Immunization", "i3"),
        ("AuditEvent", "a1"),
    ];
    let without_time = |version: &store::StoredVersion| {
        let mut body: Value = if version.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&version.body).unwrap()
        };
        if let Some(meta) = body.get_mut("meta").and_then(Value::as_object_mut) {
            meta.shift_remove("lastUpdated");
        }
        json!({"version": version.version, "deleted": version.is_deleted(), "body": body})
    };
    let mut out = serde_json::Map::new();
    for (rt, id) in ids {
        let mut versions = Vec::new();
        if let Some(current) = store.read(rt, id).unwrap() {
            for v in 1..=current.version {
                versions.push(without_time(&store.vread(rt, id, v).unwrap().unwrap()));
            }
        }
        let history = store
            .history(&HistoryScope::Instance(rt.into(), id.into()), None, 0, 100)
            .unwrap();
        let listed: Vec<u64> = history.versions.iter().map(|v| v.version).collect();
        out.insert(
            format!("{rt}/{id}"),
            json!({"versions": versions, "history": listed}),
        );
    }
    let system = store.history(&HistoryScope::System, None, 0, 100).unwrap();
    let log: Vec<String> = system
        .versions
        .iter()
        .map(|v| format!("{}/{}/{}", v.resource_type, v.id, v.version))
        .collect();
    out.insert("system history".into(), json!(log));
    for (rt, params) in [
        ("Patient", vec![("family", "山田")]),
        ("Patient", vec![("family", "佐藤")]),
        ("Patient", vec![("family", "高橋")]),
        ("Patient", vec![("family", "田中")]),
        ("Patient", vec![("family", "鈴木")]),
        ("Immunization", vec![("patient", "Patient/p1")]),
        ("Immunization", vec![("patient", "Patient/p2")]),
        ("Immunization", vec![("status", "completed")]),
        ("Immunization", vec![("status", "not-done")]),
        ("Immunization", vec![("date", "2024-06-03")]),
        ("Immunization", vec![("lot-number", "L2")]),
        ("AuditEvent", vec![("patient", "Patient/p1")]),
        ("AuditEvent", vec![("patient", "Patient/p2")]),
        ("AuditEvent", vec![("subtype", "update")]),
    ] {
        out.insert(
            format!("{rt}?{params:?}"),
            json!(search_ids(store, rt, &params)),
        );
    }
    for patient in ["Patient/p1", "Patient/p2"] {
        let covered: Vec<Value> = patient_doses(store, patient)
            .iter()
            .map(|c| json!({"id": c.id, "members": String::from_utf8_lossy(&c.members)}))
            .collect();
        out.insert(format!("covered {patient}"), json!(covered));
    }
    Value::Object(out)
}

fn outcomes(result: Result<Vec<store::Committed>, StoreError>) -> Value {
    match result {
        Ok(committed) => json!(
            committed
                .iter()
                .map(|c| format!(
                    "{}/{} {:?} v{}",
                    c.version.resource_type, c.version.id, c.outcome, c.version.version
                ))
                .collect::<Vec<_>>()
        ),
        Err(error) => json!(error.to_string()),
    }
}

#[tokio::test]
async fn staged_writes_are_stored_exactly_as_committed_ones() {
    let committed_dir = tempfile::tempdir().unwrap();
    let staged_dir = tempfile::tempdir().unwrap();
    let committed = open_covering(committed_dir.path(), COVERED);
    let mut committed_outcomes = Vec::new();
    for transaction in bulk_transactions() {
        committed_outcomes.push(outcomes(committed.commit(transaction).await));
    }

    let staged = open_covering(staged_dir.path(), COVERED);
    let mut transactions = bulk_transactions().into_iter();
    let mut staged_outcomes = Vec::new();
    staged_outcomes.push(outcomes(staged.stage(transactions.next().unwrap()).await));
    // Planned against the first stage (p1 unchanged, i1 its version 2), yet not readable.
    staged_outcomes.push(outcomes(staged.stage(transactions.next().unwrap()).await));
    assert!(staged.read("Patient", "p1").unwrap().is_none());
    assert!(search_ids(&staged, "Immunization", &[("patient", "Patient/p1")]).is_empty());
    staged.write_staged().await.unwrap();
    assert_eq!(
        staged.read("Immunization", "i1").unwrap().unwrap().version,
        2
    );
    staged_outcomes.push(outcomes(staged.stage(transactions.next().unwrap()).await));
    // A commit writes what is staged before it, and sees it.
    staged_outcomes.push(outcomes(staged.commit(transactions.next().unwrap()).await));
    assert_eq!(staged_outcomes, committed_outcomes);
    assert_eq!(
        everything_readable(&staged),
        everything_readable(&committed)
    );

    // Dropped without shutdown: the written tables are durable, and the change log goes on
    // after them.
    drop(staged);
    let staged = open_covering(staged_dir.path(), COVERED);
    assert_eq!(
        everything_readable(&staged),
        everything_readable(&committed)
    );
    let late = || {
        vec![put(
            "Patient",
            "p4",
            Precondition::None,
            patient("p4", "小林"),
        )]
    };
    staged.commit(late()).await.unwrap();
    committed.commit(late()).await.unwrap();
    assert_eq!(
        everything_readable(&staged),
        everything_readable(&committed)
    );
}

#[tokio::test]
async fn staged_writes_not_written_are_dropped_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let written = put(
        "Patient",
        "written",
        Precondition::None,
        patient("written", "A"),
    );
    let dropped = put(
        "Patient",
        "dropped",
        Precondition::None,
        patient("dropped", "B"),
    );
    store.stage(vec![written]).await.unwrap();
    store.write_staged().await.unwrap();
    store.stage(vec![dropped]).await.unwrap();
    store.shutdown().await.unwrap();
    drop(store);
    let store = open(dir.path());
    assert!(store.read("Patient", "written").unwrap().is_some());
    assert!(store.read("Patient", "dropped").unwrap().is_none());
}
