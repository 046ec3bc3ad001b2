//! The `musubi` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc malloc: the store writer and the import allocate and free many
/// small JSON values, and glibc kept freed memory (peak RSS) and spent a third of the writer's
/// time in malloc/free (docs/adr/0003-storage-engine.md, docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
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

/// Where the configuration and the data are, for every command.
#[derive(clap::Args)]
struct Common {
    /// TOML configuration file; without it the demo configuration shipped in the repository.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Directory of the embedded store (overrides storage.data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the FHIR API (defaults: 127.0.0.1:8080, ./data, the built-in demo configuration).
    Serve {
        #[command(flatten)]
        common: Common,
        /// Address to listen on, e.g. 127.0.0.1:8080 (overrides server.listen).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Import a municipal file (CSV in UTF-8, UTF-8 with BOM or CP932) into the store. Stop the
    /// server on the same data directory first, or use POST /municipal/v1/imports.
    /// Exit status: 0 every row imported or unchanged, 3 some rows rejected (listed), 1 failed.
    Import {
        #[command(flatten)]
        common: Common,
        /// Layout name, e.g. musubi-vaccination (docs/municipal.md).
        #[arg(long)]
        layout: String,
        /// 6-digit local-government code (全国地方公共団体コード) of the municipality.
        #[arg(long)]
        municipality: String,
        /// auto (default), utf-8, utf-8-bom or cp932.
        #[arg(long, default_value = "auto")]
        encoding: String,
        /// Also write the full report as JSON to this file.
        #[arg(long)]
        report: Option<PathBuf>,
        /// The file to import.
        file: PathBuf,
    },
    /// Export the municipality's residents' records in its layout.
    Export {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        layout: String,
        #[arg(long)]
        municipality: String,
        /// Only records on or after this day (2024-04-01, 20240401 or 令和6年4月1日).
        #[arg(long)]
        since: Option<String>,
        /// utf-8, utf-8-bom or cp932; default: the layout's.
        #[arg(long)]
        encoding: Option<String>,
        /// Write here instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Close a month of routine vaccinations: claim batches per medical association and
    /// municipality as Claims with their deliveries (docs/billing.md). Stop the server on the
    /// same data directory first, or use POST /routing/v1/month-close.
    /// Exit status: 0 closed, 3 closed with exceptions (listed), 1 failed.
    CloseMonth {
        #[command(flatten)]
        common: Common,
        /// The month, YYYY-MM.
        #[arg(long)]
        month: String,
    },
    /// Hash a client secret or a user's password for the configuration (Argon2id PHC string).
    /// Reads the secret from standard input so it stays out of the shell history.
    HashSecret,
}

fn load_config(common: &Common) -> Result<Config, ExitCode> {
    let mut config = Config::load(common.config.as_deref(), std::env::vars()).map_err(|error| {
        eprintln!("musubi: {error}");
        ExitCode::from(2)
    })?;
    if let Some(dir) = &common.data_dir {
        config.storage.data_dir = dir.clone();
    }
    Ok(config)
}

/// The store and the reference data, for commands that work without the HTTP server.
fn offline_state(config: Config) -> Result<gateway::state::AppState, ExitCode> {
    let store = gateway::open_store_offline(&config).map_err(|error| {
        eprintln!(
            "musubi: cannot open the store in {}: {error} (is a server running on it? stop it, or use the HTTP API)",
            config.storage.data_dir.display()
        );
        ExitCode::FAILURE
    })?;
    let domain =
        gateway::domain::Domain::load(config.profiles.extra_dir.as_deref()).map_err(|error| {
            eprintln!("musubi: {error}");
            ExitCode::from(2)
        })?;
    let public_base = if config.server.public_base_url.is_empty() {
        "http://localhost".to_owned()
    } else {
        config.server.public_base_url.clone()
    };
    let access = gateway::access::AccessState::load(&config, &public_base).map_err(|error| {
        eprintln!("musubi: {error}");
        ExitCode::from(2)
    })?;
    Ok(gateway::state::AppState::new(config, store, domain, access))
}

fn shut_down(state: &gateway::state::AppState) -> Result<(), ExitCode> {
    futures_executor::block_on(state.store.shutdown()).map_err(|error| {
        eprintln!("musubi: the store did not close cleanly: {error}");
        ExitCode::FAILURE
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { common, listen } => {
            let mut config = match load_config(&common) {
                Ok(config) => config,
                Err(code) => return code,
            };
            if let Some(listen) = listen {
                config.server.listen = listen;
                if let Err(error) = config.listen_addr() {
                    eprintln!("musubi: --listen: {error}");
                    return ExitCode::from(2);
                }
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
        Command::Import {
            common,
            layout,
            municipality,
            encoding,
            report,
            file,
        } => run(|| {
            import(
                &common,
                &layout,
                &municipality,
                &encoding,
                report.as_deref(),
                &file,
            )
        }),
        Command::Export {
            common,
            layout,
            municipality,
            since,
            encoding,
            output,
        } => run(|| {
            export(
                &common,
                &layout,
                &municipality,
                since.as_deref(),
                encoding.as_deref(),
                output.as_deref(),
            )
        }),
        Command::CloseMonth { common, month } => run(|| close_month(&common, &month)),
        Command::HashSecret => run(hash_secret),
    }
}

fn hash_secret() -> Result<ExitCode, ExitCode> {
    let mut secret = String::new();
    std::io::stdin()
        .read_line(&mut secret)
        .map_err(|e| usage(format!("cannot read the secret: {e}")))?;
    let secret = secret.trim_end_matches(['\r', '\n']);
    if secret.len() < 12 {
        return Err(usage("secrets must be at least 12 characters long"));
    }
    let hash = auth::hash_secret(secret).map_err(|e| usage(e.to_string()))?;
    println!("{hash}");
    Ok(ExitCode::SUCCESS)
}

fn run(command: impl FnOnce() -> Result<ExitCode, ExitCode>) -> ExitCode {
    command().unwrap_or_else(|code| code)
}

fn usage(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("musubi: {message}");
    ExitCode::from(2)
}

fn import(
    common: &Common,
    layout: &str,
    municipality: &str,
    encoding: &str,
    report_path: Option<&std::path::Path>,
    file: &std::path::Path,
) -> Result<ExitCode, ExitCode> {
    let municipality = identifiers::MunicipalityCode::parse(municipality)
        .map_err(|e| usage(format!("--municipality: {e}")))?;
    let encoding = match encoding {
        "auto" => municipal::EncodingChoice::Auto,
        other => municipal::EncodingChoice::Exactly(
            other
                .parse()
                .map_err(|e| usage(format!("--encoding: {e}")))?,
        ),
    };
    let input = std::fs::File::open(file)
        .map_err(|e| usage(format!("cannot read {}: {e}", file.display())))?;
    let size = input.metadata().map(|m| m.len()).unwrap_or(0);
    let config = load_config(common)?;
    let state = offline_state(config)?;
    let layout = gateway::municipal::layout(&state, layout, &municipality)
        .map_err(|e| usage(e.to_string()))?;
    let bar = indicatif::ProgressBar::new(size);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} (eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let report = gateway::municipal::import(
        &state,
        &gateway::access::Access::Internal,
        &layout,
        &municipality,
        (
            std::io::BufReader::with_capacity(1 << 20, input),
            Some(size),
            encoding,
        ),
        gateway::municipal::Delivery::Bulk {
            rows: gateway::municipal::BULK_ROWS,
        },
        &mut |r| {
            bar.set_position(r.bytes_read);
            let seconds = (r.elapsed_ms.max(1) as f64) / 1000.0;
            bar.set_message(format!(
                "{} rows, {} rejected, {:.0} rows/s",
                r.rows_read,
                r.rows_rejected,
                r.rows_read as f64 / seconds
            ));
        },
    );
    bar.finish_and_clear();
    shut_down(&state)?;
    print_report(&report);
    if let Some(path) = report_path {
        let text = serde_json::to_vec_pretty(&report).unwrap_or_default();
        std::fs::write(path, text)
            .map_err(|e| usage(format!("cannot write the report {}: {e}", path.display())))?;
    }
    Ok(match report.state {
        gateway::municipal::ImportState::Failed => ExitCode::FAILURE,
        _ if report.rows_rejected > 0 => ExitCode::from(3),
        _ => ExitCode::SUCCESS,
    })
}

fn print_report(report: &gateway::municipal::ImportReport) {
    let seconds = (report.elapsed_ms.max(1) as f64) / 1000.0;
    println!(
        "{} rows read in {:.1} s ({:.0} rows/s), encoding {}: {} imported, {} unchanged, {} rejected; resources: {} created, {} updated, {} unchanged",
        report.rows_read,
        seconds,
        report.rows_read as f64 / seconds,
        report.encoding.as_deref().unwrap_or("?"),
        report.rows_imported,
        report.rows_unchanged,
        report.rows_rejected,
        report.resources_created,
        report.resources_updated,
        report.resources_unchanged,
    );
    for problem in &report.errors {
        let mut line = format!("line {}", problem.line);
        if let Some(column) = &problem.column {
            line.push_str(&format!(", column {column}"));
        }
        if let Some(value) = &problem.value {
            line.push_str(&format!(" ({value:?})"));
        }
        println!("{line}: {}", problem.reason);
    }
    if report.errors_not_listed > 0 {
        println!("… and {} more rejected rows", report.errors_not_listed);
    }
    if let Some(failure) = &report.failure {
        println!("import stopped: {failure}");
    }
}

fn export(
    common: &Common,
    layout: &str,
    municipality: &str,
    since: Option<&str>,
    encoding: Option<&str>,
    output: Option<&std::path::Path>,
) -> Result<ExitCode, ExitCode> {
    let municipality = identifiers::MunicipalityCode::parse(municipality)
        .map_err(|e| usage(format!("--municipality: {e}")))?;
    let since = since
        .map(|s| mappers::wareki::parse_date(s).map_err(|e| usage(format!("--since: {e}"))))
        .transpose()?;
    let encoding = encoding
        .map(|e| {
            e.parse::<municipal::Encoding>()
                .map_err(|e| usage(format!("--encoding: {e}")))
        })
        .transpose()?;
    let config = load_config(common)?;
    let state = offline_state(config)?;
    let layout = gateway::municipal::layout(&state, layout, &municipality)
        .map_err(|e| usage(e.to_string()))?;
    let export = gateway::municipal::export(&state, &layout, &municipality, since, encoding)
        .map_err(|e| usage(e.to_string()))?;
    shut_down(&state)?;
    match output {
        Some(path) => std::fs::write(path, &export.file)
            .map_err(|e| usage(format!("cannot write {}: {e}", path.display())))?,
        None => {
            use std::io::Write as _;
            std::io::stdout()
                .write_all(&export.file)
                .map_err(|e| usage(format!("cannot write the export: {e}")))?;
        }
    }
    eprintln!("{} rows exported", export.rows);
    for reason in &export.skipped {
        eprintln!("left out: {reason}");
    }
    Ok(ExitCode::SUCCESS)
}

fn close_month(common: &Common, month: &str) -> Result<ExitCode, ExitCode> {
    let config = load_config(common)?;
    let state = offline_state(config)?;
    let result = futures_executor::block_on(gateway::month_close::close_offline(&state, month));
    shut_down(&state)?;
    let summary = result.map_err(|error| {
        let reason = error
            .issues
            .first()
            .map_or_else(|| "unknown error".to_owned(), |i| i.diagnostics.clone());
        eprintln!("musubi: the month close failed: {reason}");
        if error.kind == gateway::error::ErrorKind::BadRequest {
            ExitCode::from(2)
        } else {
            ExitCode::FAILURE
        }
    })?;
    for line in summary.lines() {
        println!("{line}");
    }
    Ok(if summary.exceptions.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
