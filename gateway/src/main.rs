//! The `musubi` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gateway::config::Config;

#[derive(Parser)]
#[command(
    name = "musubi",
    version,
    about = "Musubi: a FHIR R4 gateway for Japanese municipal and maternal-child health data"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the FHIR API (defaults: 127.0.0.1:8080, ./data, the built-in demo configuration).
    Serve {
        /// TOML configuration file; without it the demo configuration shipped in the repository.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on, e.g. 127.0.0.1:8080 (overrides server.listen).
        #[arg(long)]
        listen: Option<String>,
        /// Directory of the embedded store (overrides storage.data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            listen,
            data_dir,
        } => {
            let mut config = match Config::load(config.as_deref(), std::env::vars()) {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("musubi: {error}");
                    return ExitCode::from(2);
                }
            };
            if let Some(listen) = listen {
                config.server.listen = listen;
                if let Err(error) = config.listen_addr() {
                    eprintln!("musubi: --listen: {error}");
                    return ExitCode::from(2);
                }
            }
            if let Some(dir) = data_dir {
                config.storage.data_dir = dir;
            }
            gateway::telemetry::init(&config.log);
            let runtime = actix_web::rt::System::new();
            match runtime.block_on(gateway::serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(%error, "musubi stopped with an error");
                    eprintln!("musubi: {error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
