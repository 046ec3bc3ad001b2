//! The Musubi gateway: configuration, the HTTP edge and the FHIR REST interactions, wired to a
//! [`store::Store`]. `main.rs` is only the command line around [`serve`].

pub mod capability;
pub mod config;
pub mod error;
pub mod format;
pub mod http;
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

/// Open the embedded store named by the configuration.
pub fn open_store(config: &Config) -> Result<Arc<dyn store::Store>, store::StoreError> {
    let options = store::StoreOptions {
        cache_bytes: config.storage.cache_mb * 1024 * 1024,
    };
    Ok(Arc::new(store::SledStore::open(
        &config.storage.data_dir,
        &options,
    )?))
}

/// Bind the listener and build the server; the caller drives `Running::server`.
pub fn start(config: Config, store: Arc<dyn store::Store>) -> std::io::Result<Running> {
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
    let state = web::Data::new(AppState::new(config, store));
    let app_state = state.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .wrap(actix_web::middleware::from_fn(http::observe))
            .configure(http::configure)
    })
    .workers(workers)
    .keep_alive(keep_alive)
    .listen(listener)?
    .run();
    Ok(Running {
        addr,
        server,
        state,
    })
}

/// Run until SIGINT/SIGTERM, then finish in-flight requests and leave the store clean.
pub async fn serve(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let store = open_store(&config)?;
    let running = start(config, store.clone())?;
    tracing::info!(addr = %running.addr, "Musubi is listening; FHIR base /fhir");
    running.server.await?;
    tracing::info!("stopping: flushing the store");
    store.shutdown().await?;
    tracing::info!("stopped cleanly");
    Ok(())
}
