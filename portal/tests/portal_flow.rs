//! The real client against the local mock portal (TLS with a throwaway CA): authorisation,
//! pulls, mapping and de-duplication, consent refusal before any request, and the portal's
//! rate-limit, error, timeout and malformed answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use portal::{
    AuthorisationCallback, ClientAuth, ClientKey, LotMatch, PatientId, PortalClient, PortalConfig,
    PortalError, PortalSession, PortalTables, RetryPolicy, reconcile, transaction,
};
use portal_mock::{Category, ClientCredential, Counts, Fault, MockPortal, Scenario};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::{Value, json};
use time::OffsetDateTime;

const CLIENT_ID: &str = "musubi-test";
const REDIRECT: &str = "https://phr.example/callback";
const PERSON: &str = "card-holder-1";
const PATIENT: &str = "child-1";
const HOT9: &str = "http://medis.or.jp/CodeSystem/master-HOT9";

struct Setup {
    mock: MockPortal,
    client: PortalClient,
    tables: Arc<PortalTables>,
}

fn new_key() -> ClientKey {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    ClientKey::from_pkcs8_der(pkcs8.as_ref(), Some("k1".into())).unwrap()
}

fn client_for(mock: &MockPortal, key: ClientKey, tables: Arc<PortalTables>) -> PortalClient {
    let mut config = PortalConfig::new(
        mock.base_url(),
        CLIENT_ID,
        ClientAuth::PrivateKeyJwt(Box::new(key)),
        REDIRECT,
    );
    config.trust_public_roots = false;
    config.extra_roots_pem = vec![mock.ca_pem().to_owned()];
    // Generous for a loaded 2-core machine; the slow faults below are well beyond it.
    config.request_timeout = Duration::from_millis(1000);
    config.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        max_retry_after: Duration::from_secs(5),
    };
    PortalClient::new(config, tables).unwrap()
}

async fn setup() -> Setup {
    let key = new_key();
    let scenario = Scenario::new(
        CLIENT_ID,
        ClientCredential::PublicKey(key.public_key().to_vec()),
        REDIRECT,
    );
    let mock = MockPortal::start(scenario).await;
    let tables = Arc::new(PortalTables::load(&[]).unwrap());
    let client = client_for(&mock, key, tables.clone());
    Setup {
        mock,
        client,
        tables,
    }
}

/// The person's side: open the authorisation URL (the card read is the mock's header) and
/// return the callback query the portal redirects to.
async fn consent_at_portal(mock: &MockPortal, url: &str, decision: &str) -> String {
    let agent = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(mock.ca_pem().as_bytes()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = agent
        .get(url)
        .header("x-mock-person", PERSON)
        .header("x-mock-decision", decision)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 302, "{:?}", resp.text().await);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(REDIRECT), "{location}");
    location.split_once('?').unwrap().1.to_owned()
}

async fn authorise(s: &Setup) -> PortalSession {
    let (url, pending) = s
        .client
        .begin_authorisation(PatientId::parse(PATIENT).unwrap())
        .unwrap();
    let query = consent_at_portal(&s.mock, url.as_str(), "allow").await;
    s.client
        .complete_authorisation(
            &pending,
            &AuthorisationCallback::from_query(&query),
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap()
}

fn vaccination(name: &str, date: &str, lot: Option<&str>, id: &str) -> Value {
    let mut v = json!({
        "recordId": id, "vaccineName": name, "vaccinationDate": date, "doseNumber": "1",
        "medicalInstitution": {"name": "結びこどもクリニック", "code": "1312345678"},
        "municipalityCode": "131016"
    });
    if let Some(lot) = lot {
        v["lotNumber"] = json!(lot);
    }
    v
}

fn seed_one(s: &Setup) {
    s.mock.seed(
        PERSON,
        Category::Vaccinations,
        vec![vaccination("BCG", "20230801", Some("B1"), "R-1")],
    );
}

fn hot9(system: &str, code: &str) -> Option<String> {
    (system == HOT9 && code == "1111111").then(|| "mr".to_owned())
}

fn assert_valid(resource: &Value) {
    let issues = fhir::validate::validate_resource(fhir::Definitions::r4(), resource);
    let errors: Vec<_> = issues.iter().filter(|i| i.severity.is_error()).collect();
    assert!(errors.is_empty(), "{resource}\n{errors:#?}");
}

#[tokio::test]
async fn authorise_pull_map_and_deduplicate_against_a_clinic_record() {
    let s = setup().await;
    s.mock.seed(
        PERSON,
        Category::Vaccinations,
        vec![
            vaccination("麻しん風しん混合", "20240401", Some("Y-123"), "R-1"),
            vaccination("BCG", "20230801", Some("B1"), "R-2"),
            vaccination("おたふくかぜ", "20240501", None, "R-3"),
            vaccination("日本脳炎", "20250601", None, "R-4"),
        ],
    );
    s.mock.seed(
        PERSON,
        Category::ChildCheckups,
        vec![json!({
            "recordId": "C-1", "checkupName": "1歳6か月児健診", "checkupDate": "20250110",
            "results": [
                {"itemName": "身長", "value": "80.5", "unit": "cm"},
                {"itemName": "体重", "value": "10.40", "unit": "kg"},
                {"itemName": "判定", "value": "異常なし"}
            ]
        })],
    );
    let mut session = authorise(&s).await;
    assert_eq!(session.patient.as_str(), PATIENT);
    assert_eq!(
        session.access.expires_at - session.access.granted_at,
        time::Duration::days(90)
    );
    let now = OffsetDateTime::now_utc();

    let pull = s.client.pull_vaccinations(&mut session, now).await.unwrap();
    assert_eq!(pull.records.len(), 3, "{:?}", pull.skipped);
    assert_eq!(pull.skipped.len(), 1);
    assert_eq!(pull.skipped[0].expression, "/vaccinations/0/vaccineName");
    assert_eq!(pull.raw_pages.len(), 2, "page size 2, four records");
    assert_eq!(
        s.mock.counts(),
        Counts {
            total: 4,
            authorize: 1,
            token: 1,
            records: 2
        }
    );

    let patient = PatientId::parse(PATIENT).unwrap();
    let clinic = json!({
        "resourceType": "Immunization", "id": "clinic-1", "status": "completed",
        "vaccineCode": {"coding": [{"system": HOT9, "code": "1111111"}]},
        "patient": {"reference": "Patient/child-1"},
        "occurrenceDateTime": "2024-04-01T10:30:00+09:00",
        "lotNumber": "y123"
    });
    let mapped = pull.mapped(&s.tables, &patient);
    let first = reconcile(&s.tables, mapped, std::slice::from_ref(&clinic), hot9, now);
    let new_types: Vec<&str> = first
        .new
        .iter()
        .map(|m| m.key.vaccine_type.as_str())
        .collect();
    assert_eq!(new_types, ["bcg", "je"]);
    assert_eq!(first.matched.len(), 1);
    let m = &first.matched[0];
    assert_eq!(m.existing_id, "clinic-1");
    assert_eq!(m.lot, LotMatch::Same);
    let prov = m.provenance.as_ref().unwrap();
    assert_eq!(
        prov["target"],
        json!([{"reference": "Immunization/clinic-1"}])
    );
    assert_eq!(prov["entity"][0]["what"]["identifier"]["value"], "R-1");
    assert!(first.conflicts.is_empty());

    let bundle = transaction(&first, &[]);
    let urls: Vec<&str> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["request"]["url"].as_str().unwrap())
        .collect();
    assert_eq!(urls.len(), 5, "{urls:?}");
    assert_eq!(
        urls.iter()
            .filter(|u| u.starts_with("Immunization/"))
            .count(),
        2,
        "no Immunization for the clinic's MR dose"
    );
    for entry in bundle["entry"].as_array().unwrap() {
        assert_valid(&entry["resource"]);
    }

    // Stored: the clinic record and the two new ones. A second pull writes nothing new.
    let mut stored = vec![clinic];
    stored.extend(first.new.iter().map(|m| m.immunization.clone()));
    let again = s.client.pull_vaccinations(&mut session, now).await.unwrap();
    let second = reconcile(
        &s.tables,
        again.mapped(&s.tables, &patient),
        &stored,
        hot9,
        now,
    );
    assert!(second.new.is_empty());
    assert_eq!(second.matched.len(), 3);
    let with_provenance: Vec<&str> = second
        .matched
        .iter()
        .filter(|m| m.provenance.is_some())
        .map(|m| m.existing_id.as_str())
        .collect();
    assert_eq!(with_provenance, ["clinic-1"]);
    assert_eq!(
        second.matched[0].provenance.as_ref().unwrap()["id"],
        prov["id"],
        "the Provenance of a match is written under the same id every pull"
    );

    let checkups = s.client.pull_checkups(&mut session, now).await.unwrap();
    assert_eq!(checkups.records.len(), 1);
    let mapped = checkups.mapped(&s.tables, &patient);
    assert_eq!(mapped[0].observations.len(), 3);
    assert_eq!(mapped[0].report["code"]["coding"][0]["code"], "infant-1y6m");
    for r in mapped[0]
        .observations
        .iter()
        .chain([&mapped[0].report, &mapped[0].provenance])
    {
        assert_valid(r);
    }
}

#[tokio::test]
async fn expired_or_revoked_consent_is_refused_before_any_request() {
    let s = setup().await;
    seed_one(&s);
    let mut session = authorise(&s).await;
    let before = s.mock.counts();

    let later = session.access.granted_at + time::Duration::days(90);
    match s.client.pull_vaccinations(&mut session, later).await {
        Err(PortalError::ConsentExpired { expired_at }) => {
            assert_eq!(expired_at, Some(session.access.expires_at));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.client.pull_checkups(&mut session, later).await,
        Err(PortalError::ConsentExpired { .. })
    ));
    assert!(matches!(
        s.client.refresh(&mut session, later).await,
        Err(PortalError::ConsentExpired { .. })
    ));

    let now = OffsetDateTime::now_utc();
    session.access.revoke(now);
    assert!(matches!(
        s.client.pull_vaccinations(&mut session, now).await,
        Err(PortalError::ConsentRevoked { .. })
    ));
    assert_eq!(s.mock.counts(), before, "no request reached the portal");
}

#[tokio::test]
async fn rate_limit_then_success_honours_retry_after() {
    let s = setup().await;
    seed_one(&s);
    let mut session = authorise(&s).await;
    s.mock.push_fault(Fault::RateLimited(Some("1".into())));
    let started = Instant::now();
    let pull = s
        .client
        .pull_vaccinations(&mut session, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(pull.records.len(), 1);
    assert_eq!(pull.requests, 2);
    assert_eq!(s.mock.counts().records, 2);
}

#[tokio::test]
async fn rate_limit_beyond_the_policy_or_retries_ends_the_pull() {
    let s = setup().await;
    seed_one(&s);
    let mut session = authorise(&s).await;
    let now = OffsetDateTime::now_utc();

    s.mock.push_fault(Fault::RateLimited(Some("120".into())));
    match s.client.pull_vaccinations(&mut session, now).await {
        Err(PortalError::RateLimited {
            attempts,
            retry_after,
        }) => {
            assert_eq!(attempts, 1);
            assert_eq!(retry_after, Some(Duration::from_secs(120)));
        }
        other => panic!("{other:?}"),
    }

    for _ in 0..3 {
        s.mock.push_fault(Fault::RateLimited(None));
    }
    match s.client.pull_vaccinations(&mut session, now).await {
        Err(PortalError::RateLimited { attempts, .. }) => assert_eq!(attempts, 3),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.mock.counts().records, 4);
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let s = setup().await;
    seed_one(&s);
    let mut session = authorise(&s).await;
    let now = OffsetDateTime::now_utc();

    s.mock.push_fault(Fault::Status(500));
    s.mock.push_fault(Fault::Status(503));
    let pull = s.client.pull_vaccinations(&mut session, now).await.unwrap();
    assert_eq!(pull.records.len(), 1);
    assert_eq!(pull.requests, 3);

    for _ in 0..3 {
        s.mock.push_fault(Fault::Status(500));
    }
    match s.client.pull_vaccinations(&mut session, now).await {
        Err(PortalError::Upstream {
            status, attempts, ..
        }) => {
            assert_eq!(status, Some(500));
            assert_eq!(attempts, 3);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.mock.counts().records, 6);
}

#[tokio::test]
async fn client_errors_other_than_401_and_429_are_not_retried() {
    let s = setup().await;
    seed_one(&s);
    let mut session = authorise(&s).await;
    s.mock.push_fault(Fault::Body {
        status: 404,
        body: r#"{"error":"not_found"}"#.into(),
    });
    match s
        .client
        .pull_vaccinations(&mut session, OffsetDateTime::now_utc())
        .await
    {
        Err(PortalError::Upstream {
            status,
            attempts,
            detail,
        }) => {
            assert_eq!((status, attempts), (Some(404), 1));
            assert_eq!(detail, "not_found");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.mock.counts().records, 1);
}

#[tokio::test]
async fn a_timeout_is_retried_and_all_timeouts_are_reported() {
    let s = setup().await;
    seed_one(&s);
    let mut session = authorise(&s).await;
    let now = OffsetDateTime::now_utc();

    s.mock.push_fault(Fault::Slow(Duration::from_millis(2500)));
    let pull = s.client.pull_vaccinations(&mut session, now).await.unwrap();
    assert_eq!(pull.records.len(), 1);
    assert_eq!(pull.requests, 2);

    for _ in 0..3 {
        s.mock.push_fault(Fault::Slow(Duration::from_millis(2500)));
    }
    match s.client.pull_vaccinations(&mut session, now).await {
        Err(PortalError::Timeout { attempts }) => assert_eq!(attempts, 3),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn malformed_answers_name_the_json_pointer() {
    let s = setup().await;
    let mut session = authorise(&s).await;
    let now = OffsetDateTime::now_utc();
    let cases = [
        (
            r#"{"vaccinations":[{"vaccineName":"BCG","vaccinationDate":"2024/01/01"}]}"#,
            "/vaccinations/0/vaccinationDate",
        ),
        (r#"{"vaccinations":{"vaccineName":"BCG"}}"#, "/vaccinations"),
        (
            r#"{"vaccinations":[{"vaccineName":"BCG","vaccinationDate":"20240101","lotNumber":{"x":1}}]}"#,
            "/vaccinations/0/lotNumber",
        ),
        ("<html>maintenance</html>", ""),
    ];
    for (body, pointer) in cases {
        s.mock.push_fault(Fault::Body {
            status: 200,
            body: body.into(),
        });
        match s.client.pull_vaccinations(&mut session, now).await {
            Err(PortalError::Malformed {
                pointer: p,
                context,
                ..
            }) => {
                assert_eq!(p, pointer, "{body}");
                assert_eq!(context, "/api/v1/self-info/vaccinations");
            }
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_invalid_token_is_refreshed_once() {
    let s = setup().await;
    seed_one(&s);
    let mut session = authorise(&s).await;
    let now = OffsetDateTime::now_utc();
    let old = session.tokens.clone();

    s.mock.invalidate_access_tokens(PERSON);
    let pull = s.client.pull_vaccinations(&mut session, now).await.unwrap();
    assert_eq!(pull.records.len(), 1);
    assert_eq!(s.mock.counts().token, 2, "one code exchange, one refresh");
    assert_ne!(session.tokens.access_token, old.access_token);
    assert_ne!(
        session.tokens.refresh_token, old.refresh_token,
        "the rotated refresh token is kept"
    );

    // The refreshed token is refused too: one refresh only, then Unauthorised.
    s.mock.push_fault(Fault::InvalidToken);
    s.mock.push_fault(Fault::InvalidToken);
    match s.client.pull_vaccinations(&mut session, now).await {
        Err(PortalError::Unauthorised { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(s.mock.counts().token, 3);

    s.mock.invalidate_access_tokens(PERSON);
    s.mock.invalidate_refresh_tokens(PERSON);
    match s.client.pull_vaccinations(&mut session, now).await {
        Err(PortalError::Unauthorised { reason }) => assert!(reason.contains("invalid_grant")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn consent_ended_at_the_portal_is_remembered_in_the_session() {
    let s = setup().await;
    seed_one(&s);
    let mut session = authorise(&s).await;
    let now = OffsetDateTime::now_utc();

    s.mock.push_fault(Fault::ConsentRevoked);
    assert!(matches!(
        s.client.pull_vaccinations(&mut session, now).await,
        Err(PortalError::ConsentRevoked { .. })
    ));
    assert_eq!(session.access.revoked_at, Some(now));
    let before = s.mock.counts();
    assert!(matches!(
        s.client.pull_vaccinations(&mut session, now).await,
        Err(PortalError::ConsentRevoked { .. })
    ));
    assert_eq!(s.mock.counts(), before);

    // The portal's own view: an expired consent answers consent_expired.
    let mut session = authorise(&s).await;
    s.mock.expire_consent(PERSON);
    assert!(matches!(
        s.client.pull_vaccinations(&mut session, now).await,
        Err(PortalError::ConsentExpired { .. })
    ));
    assert!(session.access.check(now).is_err());
}

#[tokio::test]
async fn authorisation_refusals_and_bad_callbacks() {
    let s = setup().await;
    let patient = PatientId::parse(PATIENT).unwrap();
    let now = OffsetDateTime::now_utc();

    let (url, pending) = s.client.begin_authorisation(patient.clone()).unwrap();
    let query = consent_at_portal(&s.mock, url.as_str(), "deny").await;
    match s
        .client
        .complete_authorisation(&pending, &AuthorisationCallback::from_query(&query), now)
        .await
    {
        Err(PortalError::Unauthorised { reason }) => assert!(reason.contains("access_denied")),
        other => panic!("{other:?}"),
    }

    let (url, pending) = s.client.begin_authorisation(patient.clone()).unwrap();
    let query = consent_at_portal(&s.mock, url.as_str(), "allow").await;
    let callback = AuthorisationCallback::from_query(&query);
    let (_, other_pending) = s.client.begin_authorisation(patient).unwrap();
    assert!(matches!(
        s.client
            .complete_authorisation(&other_pending, &callback, now)
            .await,
        Err(PortalError::StateMismatch)
    ));
    s.client
        .complete_authorisation(&pending, &callback, now)
        .await
        .unwrap();
    match s
        .client
        .complete_authorisation(&pending, &callback, now)
        .await
    {
        Err(PortalError::Unauthorised { reason }) => assert!(reason.contains("invalid_grant")),
        other => panic!("a code is single-use: {other:?}"),
    }
}

#[tokio::test]
async fn a_client_with_another_key_is_not_authorised() {
    let s = setup().await;
    let impostor = client_for(&s.mock, new_key(), s.tables.clone());
    let (url, pending) = impostor
        .begin_authorisation(PatientId::parse(PATIENT).unwrap())
        .unwrap();
    let query = consent_at_portal(&s.mock, url.as_str(), "allow").await;
    match impostor
        .complete_authorisation(
            &pending,
            &AuthorisationCallback::from_query(&query),
            OffsetDateTime::now_utc(),
        )
        .await
    {
        Err(PortalError::Unauthorised { reason }) => assert!(reason.contains("invalid_client")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_server_outside_the_trusted_roots_is_refused() {
    let s = setup().await;
    let mut session = authorise(&s).await;
    let mut config = PortalConfig::new(
        s.mock.base_url(),
        CLIENT_ID,
        ClientAuth::ClientSecretPost(portal::Secret::new("unused")),
        REDIRECT,
    );
    config.retry.max_attempts = 1;
    // Public roots only: the mock's throwaway CA is not among them.
    let public_only = PortalClient::new(config, s.tables.clone()).unwrap();
    let before = s.mock.counts();
    match public_only
        .pull_vaccinations(&mut session, OffsetDateTime::now_utc())
        .await
    {
        Err(PortalError::Upstream { status: None, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(s.mock.counts().records, before.records, "TLS failed first");
}
