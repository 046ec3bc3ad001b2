//! What every request handler shares: configuration, the store, and the locks that serialise
//! conditional writes with the same criteria.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::config::Config;
use crate::domain::Domain;

pub struct AppState {
    pub config: Config,
    pub store: Arc<dyn store::Store>,
    /// Terminology, profiles, vaccination rules, 予診票 forms and barcode tables.
    pub domain: Domain,
    /// Clients, signing keys, grants, rate limits.
    pub access: crate::access::AccessState,
    pub resource_types: HashSet<String>,
    /// When this process started (an R4 instant); the CapabilityStatement's `date`.
    pub started_at: String,
    conditional_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Municipal imports started over HTTP in this process, by id (finished ones are also on
    /// disk, see `municipal_imports_dir`).
    pub imports: Mutex<HashMap<String, Arc<Mutex<crate::municipal::ImportReport>>>>,
    /// The PHR API's remembered answers, by Idempotency-Key (docs/phr-api.md).
    pub phr_idempotency: crate::phr_api::Idempotency,
    /// The My Number Portal adapter: its client, pending authorisations and sessions
    /// (docs/my-number-portal.md, "Serving"); shared by every worker.
    pub portal: crate::portal_api::PortalApi,
    pub consent_facts: crate::disclosure::FactsCache,
}

/// Held while a conditional write searches and commits; released on drop.
pub struct ConditionalGuard {
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl AppState {
    pub fn new(
        config: Config,
        store: Arc<dyn store::Store>,
        domain: Domain,
        access: crate::access::AccessState,
    ) -> Self {
        let resource_types = config.fhir.resource_types.iter().cloned().collect();
        let portal = crate::portal_api::PortalApi::new(&config);
        AppState {
            config,
            store,
            domain,
            access,
            resource_types,
            started_at: store::format_instant(
                (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64,
            ),
            conditional_locks: Mutex::new(HashMap::new()),
            imports: Mutex::new(HashMap::new()),
            phr_idempotency: crate::phr_api::Idempotency::default(),
            portal,
            consent_facts: crate::disclosure::FactsCache::default(),
        }
    }

    /// Where uploads of HTTP imports are spooled and their final reports kept.
    pub fn municipal_imports_dir(&self) -> std::path::PathBuf {
        self.config.storage.data_dir.join("imports")
    }

    pub fn serves(&self, resource_type: &str) -> bool {
        self.resource_types.contains(resource_type)
    }

    /// Serialise conditional creates/updates with the same criteria, so two concurrent
    /// `If-None-Exist` requests can never both create (the search and the commit happen under
    /// the lock).
    pub async fn lock_criteria(
        &self,
        resource_type: &str,
        criteria: &[(String, String)],
    ) -> ConditionalGuard {
        let mut sorted: Vec<&(String, String)> = criteria.iter().collect();
        sorted.sort();
        let mut key = resource_type.to_string();
        for (k, v) in sorted {
            key.push('\u{1f}');
            key.push_str(k);
            key.push('=');
            key.push_str(v);
        }
        let lock = {
            let mut locks = self
                .conditional_locks
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            // Forget locks nobody holds any more, so the map stays small.
            if locks.len() > 1024 {
                locks.retain(|_, l| Arc::strong_count(l) > 1);
            }
            locks.entry(key).or_default().clone()
        };
        ConditionalGuard {
            _guard: lock.lock_owned().await,
        }
    }
}
