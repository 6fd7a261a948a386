//! The command line: every subcommand, its arguments and their help text (clap).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use sluice::admin::AdminConfig;
use sluice::plugin::guest_bindings::BindingsLang;

/// Sluice runs pipelines that move messages from a source (a broker, a file, a generator)
/// through WebAssembly handlers to sinks, with retries, dead-lettering, back-pressure and
/// graceful shutdown handled by the host.
#[derive(Parser)]
#[command(
    name = "sluice",
    version = sluice::VERSION,
    about,
    long_about = None,
    max_term_width = 100
)]
pub struct Cli {
    /// Directory for compiled plugins. Default: $SLUICE_CACHE_DIR, else $XDG_CACHE_HOME/sluice,
    /// else ~/.cache/sluice.
    #[arg(long, global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Compile plugins every time instead of using the on-disk cache.
    #[arg(long, global = true)]
    pub no_cache: bool,

    /// Log line format (logs go to stderr; filter with RUST_LOG, default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run pipelines until their sources end, or until SIGTERM/SIGINT (then drain and exit 0).
    Run {
        /// Pipeline files, or directories of *.yaml files (*.test.yaml files in them are left out).
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
        /// For Rust: take the SDK from these `sluice-sdk` sources (a checkout's `sdk` folder, to
        /// work on the SDK itself). Default: a copy in the project (`vendor/`), so that it builds
        /// wherever it is moved.
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
    /// Print the JSON Schema of pipeline files for this build's connectors, for editors and CI
    /// (`sluice schema > sluice.schema.json`; see docs/pipeline-reference.md).
    Schema,
    /// Print a shell completion script: `sluice completions bash > /etc/bash_completion.d/sluice`,
    /// or `source <(sluice completions bash)`; also zsh, fish, powershell, elvish.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `sluice man > sluice.1 && man ./sluice.1`.
    Man,
    /// Check pipeline files and the plugins they name; print every error, exit 1 if any.
    Validate {
        /// Pipeline files, or directories of *.yaml files (*.test.yaml files in them are left out).
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Print what pipelines expect on their brokers: topics, consumer groups, queues, exchanges,
    /// bindings and dead-letter queues (from the files alone; nothing is contacted).
    Plan {
        /// Pipeline files, or directories of *.yaml files.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Print JSON: every pipeline with what it needs and where.
        #[arg(long, conflicts_with = "terraform")]
        json: bool,
        /// Print the input variables of deploy/terraform/<FAMILY> (terraform.tfvars.json) that
        /// declare what the pipelines need of that broker family.
        #[arg(long, value_name = "FAMILY", value_parser = clap::builder::PossibleValuesParser::new(sluice::runtime::plan::FAMILIES))]
        terraform: Option<String>,
    },
    /// Work with plugin components.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(clap::Args)]
pub struct AdminArgs {
    /// Where the admin server (health, readiness, metrics, status, dashboard) listens, or `off`.
    /// Default: loopback only.
    #[arg(long, env = "SLUICE_ADMIN_ADDR", default_value = sluice::admin::DEFAULT_LISTEN, value_name = "ADDR|off")]
    pub admin_addr: String,
    /// Bearer token that pause/resume calls must carry. Default: none (any local caller may).
    #[arg(
        long,
        env = "SLUICE_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub admin_token: Option<String>,
    /// A host name the admin server answers to besides loopback names and IP addresses (a
    /// Kubernetes Service's name, say); requests naming any other `Host` are refused, which stops
    /// DNS rebinding. Repeat it, or give a comma-separated list in the variable.
    #[arg(
        long = "admin-allowed-host",
        env = "SLUICE_ADMIN_ALLOWED_HOSTS",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub admin_allowed_hosts: Vec<String>,
}

impl AdminArgs {
    pub fn config(&self) -> anyhow::Result<Option<AdminConfig>> {
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
            allowed_hosts: self.admin_allowed_hosts.clone(),
        }))
    }
}

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Show a component's world, imports and exports, and whether it is a valid handler.
    Inspect {
        /// The component (.wasm).
        wasm: PathBuf,
    },
    /// Compile every handler the pipeline files name into the compile cache (`--cache-dir`,
    /// `SLUICE_CACHE_DIR`), as their first load would, and exit: a host started later on that
    /// cache (a container image's, a volume replicas share) is ready without compiling.
    Precompile {
        /// Pipeline files, or directories of them.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
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
