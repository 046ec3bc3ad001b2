//! Access-token costs: issue (ES256 sign), verify (ES256 verify + claim checks), and a verify
//! through the cache (SHA-256 of the token + look-up + claim checks).

use auth::{AccessClaims, Expected, KeyRing, ScopeSet, VerifyCache, issue, verify};
use criterion::{Criterion, black_box, criterion_group, criterion_main};
use time::macros::datetime;

const ISS: &str = "https://musubi.example.org/auth";
const AUD: &str = "https://musubi.example.org/fhir";

fn claims() -> AccessClaims {
    let mut claims = AccessClaims::new(
        ISS,
        AUD,
        "RelatedPerson/parent-1",
        "phr-app",
        ScopeSet::parse(
            "patient/Immunization.rs patient/Patient.rs launch/patient openid fhirUser",
        )
        .expect("bench scopes parse"),
        datetime!(2026-04-01 09:00 UTC),
        300,
    );
    claims.patient = Some("child-1".into());
    claims.fhir_user = Some("RelatedPerson/parent-1".into());
    claims
}

fn tokens(c: &mut Criterion) {
    let ring = KeyRing::generate();
    let now = datetime!(2026-04-01 09:01 UTC);
    let expected = Expected::new(ISS, AUD);
    let claims = claims();
    let token = issue(&ring, &claims).expect("issue");

    c.bench_function("issue", |b| b.iter(|| issue(&ring, black_box(&claims))));
    c.bench_function("verify", |b| {
        b.iter(|| verify(&ring, black_box(&token), now, &expected))
    });
    let cache = VerifyCache::new(10_000);
    cache.verify(&ring, &token, now, &expected).expect("warm");
    c.bench_function("verify_cached", |b| {
        b.iter(|| cache.verify(&ring, black_box(&token), now, &expected))
    });
}

criterion_group!(benches, tokens);
criterion_main!(benches);
