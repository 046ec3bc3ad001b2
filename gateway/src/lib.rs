//! The Musubi gateway: configuration, the HTTP edge and the FHIR REST interactions, wired to a
//! [`store::Store`]. `main.rs` is only the command line around [`serve`].

pub mod access;
pub mod capability;
pub mod config;
pub mod disclosure;
pub mod domain;
pub mod error;
pub mod format;
pub mod http;
pub mod memory;
pub mod month_close;
pub mod municipal;
pub mod operations;
pub mod outbox;
pub mod phr_api;
pub mod portal_api;
pub mod research;
pub mod rest;
pub mod state;
pub mod telemetry;
pub mod transaction;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::{App, HttpServer, web};

use crate::config::Config;
use crate::state::AppState;

/// A started gateway: its address, and the future that runs it until shutdown.
pub struct Running {
    pub addr: SocketAddr,
    pub server: actix_web::dev::Server,
    pub state: web::Data<AppState>,
}

/// Open the embedded store named by the configuration, for the server.
pub fn open_store(config: &Config) -> Result<Arc<dyn store::Store>, store::StoreError> {
    open_store_with(config, config.storage.cache_mb, false)
}

/// Open the store for a command run without the server (`musubi import`, `export`,
/// `close-month`): no client waits on a write there, so the writer waits for fjall's worker
/// rather than let memtables grow past their budget while it compacts
/// (`store::StoreOptions::seal_full_memtables`), within `storage.offline_cache_mb`.
pub fn open_store_offline(config: &Config) -> Result<Arc<dyn store::Store>, store::StoreError> {
    open_store_with(config, config.storage.offline_cache_mb, true)
}

fn open_store_with(
    config: &Config,
    cache_mb: u64,
    seal_full_memtables: bool,
) -> Result<Arc<dyn store::Store>, store::StoreError> {
    let idle_secs = config.server.release_idle_memory_secs;
    let options = store::StoreOptions {
        cache_bytes: cache_mb * 1024 * 1024,
        covering: domain::covering_indexes(),
        when_idle: (idle_secs > 0).then(|| store::WhenIdle {
            after: std::time::Duration::from_secs(idle_secs),
            run: memory::release_freed_memory,
        }),
        seal_full_memtables,
    };
    Ok(Arc::new(store::SledStore::open(
        &config.storage.data_dir,
        &options,
    )?))
}

/// Bind the listener, install the built-in definitional resources and build the server; the
/// caller drives `Running::server`.
pub async fn start(config: Config, store: Arc<dyn store::Store>) -> std::io::Result<Running> {
    let listen = config
        .listen_addr()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listener = TcpListener::bind(listen)?;
    let addr = listener.local_addr()?;
    let workers = match config.server.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let keep_alive = std::time::Duration::from_secs(config.server.keep_alive_secs);
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    let domain = domain::Domain::load(config.profiles.extra_dir.as_deref())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    let tls = if config.tls.enabled {
        Some(access::tls::server_config(&config.tls).map_err(invalid)?)
    } else {
        None
    };
    let public_base = public_base(&config, addr);
    let access = access::AccessState::load(&config, &public_base).map_err(invalid)?;
    let state = web::Data::new(AppState::new(config, store, domain, access));
    install_definitions(&state)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    // Start-up (profiles, definitions, access rules) freed most of what it allocated.
    memory::release_freed_memory();
    let app_state = state.clone();
    let idle_after = std::time::Duration::from_secs(state.config.server.release_idle_memory_secs);
    let server = HttpServer::new(move || {
        // Called once on each worker thread, inside its runtime.
        memory::release_when_idle(idle_after);
        App::new()
            .app_data(app_state.clone())
            .wrap(actix_web::middleware::from_fn(http::observe))
            .configure(http::configure)
    })
    .workers(workers)
    .keep_alive(keep_alive)
    .on_connect(access::tls::on_connect);
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls)?,
        None => server.listen(listener)?,
    }
    .run();
    spawn_housekeeping(state.clone());
    outbox::spawn_worker(state.clone());
    Ok(Running {
        addr,
        server,
        state,
    })
}

/// The URL clients reach this server at: configured, or derived from the bound address.
fn public_base(config: &Config, addr: SocketAddr) -> String {
    let configured = config.server.public_base_url.trim_end_matches('/');
    if !configured.is_empty() {
        return configured.to_owned();
    }
    let scheme = if config.tls.enabled { "https" } else { "http" };
    let host = match addr.ip() {
        ip if ip.is_unspecified() => "localhost".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!("{scheme}://{host}:{}", addr.port())
}

/// Forget expired tokens, grants and idle rate-limit buckets once a minute. Holds the state
/// weakly, so a stopped server's store closes.
fn spawn_housekeeping(state: web::Data<AppState>) {
    let state = Arc::downgrade(&state.into_inner());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            let Some(state) = state.upgrade() else { break };
            state.access.purge();
            state.access.limits.purge();
        }
    });
}

/// Store the built-in CodeSystems, ValueSets, profiles and 予診票 Questionnaires (those of
/// served types) so clients can read and search them like any resource. The data files own them:
/// each start writes them again, and an unchanged resource gets no new version.
async fn install_definitions(state: &AppState) -> Result<(), store::StoreError> {
    let writes: Vec<store::Write> = state
        .domain
        .definitional_resources()
        .into_iter()
        .filter(|(resource_type, _, _)| state.serves(resource_type))
        .map(|(resource_type, id, resource)| store::Write {
            resource_type,
            id,
            precondition: store::Precondition::None,
            action: store::WriteAction::Put(resource),
        })
        .collect();
    if writes.is_empty() {
        return Ok(());
    }
    let committed = state.store.commit(writes).await?;
    let changed = committed
        .iter()
        .filter(|c| c.outcome != store::WriteOutcome::Unchanged)
        .count();
    tracing::info!(
        resources = committed.len(),
        changed,
        "built-in definitional resources installed"
    );
    Ok(())
}

/// Run until SIGINT/SIGTERM, then finish in-flight requests and leave the store clean.
pub async fn serve(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    // Opening the store and starting the server free pages at once (memory::start_up_begins).
    let start_up = memory::start_up_begins();
    let store = open_store(&config)?;
    let running = start(config, store.clone()).await?;
    drop(start_up);
    tracing::info!(addr = %running.addr, "Musubi is listening; FHIR base /fhir");
    running.server.await?;
    tracing::info!("stopping: flushing the store");
    store.shutdown().await?;
    tracing::info!("stopped cleanly");
    Ok(())
}
