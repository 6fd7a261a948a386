//! The `sluice` command.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use sluice::admin::AdminConfig;
use sluice::config::load_paths;
use sluice::plugin::componentize::{componentize, componentize_with_world};
use sluice::plugin::guest_bindings::{self, BindingsLang};
use sluice::plugin::{PluginHost, default_cache_dir};
use sluice::runtime::{self, ReloadRequest, ReloadScope, Supervisor};
use sluice::telemetry::Inventory;
use sluice::telemetry::trace::{self, TraceConfig};

/// Sluice runs pipelines that move messages from a source (a broker, a file, a generator)
/// through WebAssembly handlers to sinks, with retries, dead-lettering, back-pressure and
/// graceful shutdown handled by the host.
#[derive(Parser)]
#[command(name = "sluice", version, about, long_about = None, max_term_width = 100)]
struct Cli {
    /// Directory for compiled plugins. Default: $SLUICE_CACHE_DIR, else $XDG_CACHE_HOME/sluice,
    /// else ~/.cache/sluice.
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// Compile plugins every time instead of using the on-disk cache.
    #[arg(long, global = true)]
    no_cache: bool,

    /// Log line format (logs go to stderr; filter with RUST_LOG, default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run pipelines until their sources end, or until SIGTERM/SIGINT (then drain and exit 0).
    Run {
        /// Pipeline files, or directories of *.yaml files.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        admin: AdminArgs,
        /// Export traces over OTLP/HTTP to this base URL (`/v1/traces` is appended), e.g.
        /// http://127.0.0.1:4318. Default: off, unless OTEL_EXPORTER_OTLP_ENDPOINT is set; the
        /// other OTEL_* variables (service name, sampler, headers) apply as usual.
        #[arg(long, env = "SLUICE_OTLP_ENDPOINT", value_name = "URL")]
        otlp_endpoint: Option<String>,
        /// Do not watch pipeline files and plugins for changes (reload with SIGHUP or
        /// `POST /reload` only). Default: watch.
        #[arg(long)]
        no_watch: bool,
    },
    /// Start a handler project: source, build script, README, a pipeline and a test file.
    New {
        /// The handler's name (lowercase letters, digits, `-`, `_`); also the directory.
        name: String,
        /// The language.
        #[arg(long, value_enum)]
        lang: sluice::scaffold::Lang,
        /// Where to create the project directory. Default: the current directory.
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
        /// For Rust: the `sluice-sdk` sources. Default: the SDK this binary was built with.
        #[arg(long, value_name = "PATH")]
        sdk_path: Option<PathBuf>,
    },
    /// Run pipeline unit tests (`*.test.yaml`): inputs through the real handlers and routes,
    /// with in-memory source and sinks; print a diff for every mismatch, exit 1 if any.
    Test {
        /// Test files, or directories of *.test.yaml files.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Show every pipeline of a running host (state, rates, in-flight, lag, plugins, last error)
    /// from its admin server.
    Status {
        /// Only this pipeline, with its recent errors.
        #[arg(value_name = "PIPELINE")]
        pipeline: Option<String>,
        /// The admin server's address.
        #[arg(long, env = "SLUICE_ADMIN_ADDR", default_value = sluice::admin::DEFAULT_LISTEN)]
        admin_addr: String,
        /// Print the admin API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check pipeline files and the plugins they name; print every error, exit 1 if any.
    Validate {
        /// Pipeline files, or directories of *.yaml files.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Work with plugin components.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(clap::Args)]
struct AdminArgs {
    /// Where the admin server (health, readiness, metrics, status, dashboard) listens, or `off`.
    /// Default: loopback only.
    #[arg(long, env = "SLUICE_ADMIN_ADDR", default_value = sluice::admin::DEFAULT_LISTEN, value_name = "ADDR|off")]
    admin_addr: String,
    /// Bearer token that pause/resume calls must carry. Default: none (any local caller may).
    #[arg(
        long,
        env = "SLUICE_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    admin_token: Option<String>,
}

impl AdminArgs {
    fn config(&self) -> anyhow::Result<Option<AdminConfig>> {
        if self.admin_addr == "off" {
            return Ok(None);
        }
        let listen = self.admin_addr.parse().with_context(|| {
            format!(
                "--admin-addr `{}`: expected HOST:PORT or `off`",
                self.admin_addr
            )
        })?;
        Ok(Some(AdminConfig {
            listen,
            token: self.admin_token.clone(),
        }))
    }
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Show a component's world, imports and exports, and whether it is a valid handler.
    Inspect {
        /// The component (.wasm).
        wasm: PathBuf,
    },
    /// Turn a core module into a component: one with an embedded WIT section (wit-bindgen on
    /// wasm32-unknown-unknown), or any module with `--wit DIR --world NAME` to embed first.
    Componentize {
        /// The core module (.wasm).
        module: PathBuf,
        /// Where to write the component.
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
        /// A WIT folder (with its `deps/`) whose world is embedded into the module first.
        #[arg(long, value_name = "DIR", requires = "world")]
        wit: Option<PathBuf>,
        /// The world of `--wit` the module implements.
        #[arg(long, value_name = "NAME", requires = "wit")]
        world: Option<String>,
    },
    /// Write guest bindings for a world, for languages without a generator of their own here
    /// (C, and Zig through C): `<world>.h`, `<world>.c`, `<world>_component_type.o`.
    Bindings {
        /// The language to write bindings for.
        #[arg(value_enum)]
        lang: BindingsLang,
        /// The WIT folder (with its `deps/`).
        #[arg(long, value_name = "DIR")]
        wit: PathBuf,
        /// The world to write bindings for.
        #[arg(long, value_name = "NAME")]
        world: String,
        /// The folder to write into (created if missing).
        #[arg(short, long, value_name = "DIR")]
        output: PathBuf,
    },
}

/// mimalloc: the per-message path allocates small buffers on several threads, where glibc's
/// malloc showed up as a fifth of the profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `print!` for the command's own output. A reader that stops early (`sluice plugin inspect |
/// head`) closes the pipe: the output ends quietly there instead of panicking on the write.
macro_rules! out {
    ($($arg:tt)*) => { write_stdout(format_args!($($arg)*)) };
}

/// `println!`, the same way as [`out!`].
macro_rules! outln {
    ($($arg:tt)*) => { write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

fn write_stdout(text: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    if let Err(err) = std::io::stdout().lock().write_fmt(text) {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {err}");
        std::process::exit(1);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `sluice test` reports on stdout; its pipelines' routine lines would only drown that.
    let default_level = match cli.command {
        Command::Test { .. } => "warn",
        _ => "info",
    };
    init_logging(cli.log_format, default_level);
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn plugin_host(cli: &Cli) -> PluginHost {
    let dir = if cli.no_cache {
        None
    } else {
        cli.cache_dir.clone().or_else(default_cache_dir)
    };
    PluginHost::new(dir)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Validate { paths } => {
            let host = plugin_host(&cli);
            let (loaded, mut errors) = load_paths(paths);
            for p in &loaded {
                errors.extend(runtime::check_plugins(&host, p));
            }
            for e in &errors {
                eprintln!("{e}");
            }
            if errors.is_empty() {
                outln!("{} pipeline(s) valid", loaded.len());
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("{} error(s)", errors.len());
                Ok(ExitCode::FAILURE)
            }
        }
        Command::Run {
            paths,
            admin,
            otlp_endpoint,
            no_watch,
        } => {
            let no_watch = *no_watch;
            let admin = admin.config()?;
            let exporter = trace::init(&TraceConfig {
                otlp_endpoint: otlp_endpoint.clone(),
            })?;
            let host = plugin_host(&cli);
            let (loaded, errors) = load_paths(paths);
            if !errors.is_empty() {
                for e in &errors {
                    eprintln!("{e}");
                }
                anyhow::bail!(
                    "{} error(s) in pipeline files; nothing was started",
                    errors.len()
                );
            }
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let ran = rt.block_on(async {
                let shutdown = CancellationToken::new();
                let inventory = Inventory::default();
                // The admin server outlives the pipelines' drain, so that it reports it.
                let admin_stop = CancellationToken::new();
                let _stop_admin = admin_stop.clone().drop_guard();
                let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(16);
                if let Some(admin) = admin {
                    sluice::admin::serve(
                        admin,
                        inventory.clone(),
                        Some(reload_tx.clone()),
                        admin_stop,
                    )
                    .await?;
                }
                tokio::spawn(forward_signals(shutdown.clone()));
                #[cfg(unix)]
                tokio::spawn(reload_on_sighup(reload_tx.clone()));
                let mut supervisor =
                    Supervisor::new(host, paths.clone(), inventory, shutdown.clone());
                supervisor.start(loaded).await?;
                supervisor
                    .run(reload_rx, (!no_watch).then_some(reload_tx))
                    .await
            });
            // Flush the last spans whatever the outcome (outside the runtime: it blocks).
            drop(rt);
            if let Some(exporter) = exporter {
                exporter.shutdown();
            }
            ran?;
            Ok(ExitCode::SUCCESS)
        }
        Command::New {
            name,
            lang,
            dir,
            sdk_path,
        } => {
            let project = sluice::scaffold::create(name, *lang, dir, sdk_path.as_deref())?;
            outln!("created {}", project.display());
            outln!(
                "next: cd {} && ./build.sh && sluice test {name}.test.yaml",
                project.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Test { paths } => {
            let host = plugin_host(&cli);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(run_tests(&host, paths))
        }
        Command::Status {
            pipeline,
            admin_addr,
            json,
        } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let text = rt.block_on(sluice::admin::client::status(
                admin_addr,
                pipeline.as_deref(),
                *json,
            ))?;
            out!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin {
            command: PluginCommand::Inspect { wasm },
        } => {
            let inspection = plugin_host(&cli).inspect(wasm)?;
            out!("{inspection}");
            Ok(if inspection.world.is_some() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Plugin {
            command:
                PluginCommand::Componentize {
                    module,
                    output,
                    wit,
                    world,
                },
        } => {
            let bytes = std::fs::read(module)
                .with_context(|| format!("cannot read {}", module.display()))?;
            let component = match (wit, world) {
                (Some(wit), Some(world)) => componentize_with_world(&bytes, wit, world),
                _ => componentize(&bytes),
            }
            .with_context(|| format!("{}", module.display()))?;
            std::fs::write(output, component)
                .with_context(|| format!("cannot write {}", output.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin {
            command:
                PluginCommand::Bindings {
                    lang,
                    wit,
                    world,
                    output,
                },
        } => {
            for path in guest_bindings::generate(*lang, wit, world, output)? {
                outln!("wrote {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// SIGTERM or SIGINT starts a graceful shutdown; a second one is left to the default handler
/// only after the drain (the deadline bounds it).
async fn forward_signals(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    shutdown.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested; draining");
    shutdown.cancel();
}

/// SIGHUP reloads every pipeline file and plugin; the result goes to the log.
#[cfg(unix)]
async fn reload_on_sighup(requests: tokio::sync::mpsc::Sender<ReloadRequest>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGHUP");
            return;
        }
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading");
        let request = ReloadRequest {
            scope: ReloadScope::All,
            cause: "SIGHUP",
            reply: None,
        };
        if requests.send(request).await.is_err() {
            return;
        }
    }
}

/// `sluice test`: every case of every test file, a line per case, a diff per failure.
async fn run_tests(host: &PluginHost, paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(".test.yaml"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    if files.is_empty() {
        anyhow::bail!("no *.test.yaml files found");
    }
    let (mut passed, mut failed) = (0, 0);
    for file in &files {
        let results = match sluice::testing::run_file(host, file).await {
            Ok(r) => r,
            Err(err) => {
                outln!("ERROR {}: {err:#}", file.display());
                failed += 1;
                continue;
            }
        };
        for r in results {
            if r.failures.is_empty() {
                passed += 1;
                outln!("ok    {}: {}", r.file.display(), r.name);
            } else {
                failed += 1;
                outln!("FAIL  {}: {}", r.file.display(), r.name);
                for f in &r.failures {
                    outln!("  - {}", f.replace('\n', "\n    "));
                }
            }
        }
    }
    outln!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
