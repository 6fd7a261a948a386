//! The `sluice` command.

#[macro_use]
mod output;
mod args;
mod serve;
mod test_files;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use tracing_subscriber::EnvFilter;

use sluice::plugin::componentize::{componentize, componentize_with_world};
use sluice::plugin::guest_bindings;
use sluice::plugin::{PluginHost, default_cache_dir};
use sluice::runtime;

use args::{Cli, Command, LogFormat, PluginCommand};

/// mimalloc: the per-message path allocates small buffers on several threads, where glibc's
/// malloc showed up as a fifth of the profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        Command::Schema => {
            let schema = sluice::config::schema::pipeline_schema();
            outln!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut command, "sluice", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { paths } => {
            let host = plugin_host(&cli);
            let (loaded, errors) = runtime::validate(&host, paths);
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
        Command::Plan {
            paths,
            json,
            terraform,
        } => {
            // Every check `sluice validate` makes first: a plan of a pipeline that would not
            // run would declare the wrong things.
            let host = plugin_host(&cli);
            let (loaded, errors) = runtime::validate(&host, paths);
            if !errors.is_empty() {
                for e in &errors {
                    eprintln!("{e}");
                }
                eprintln!("{} error(s)", errors.len());
                return Ok(ExitCode::FAILURE);
            }
            let plans: Vec<_> = loaded.iter().map(runtime::plan::PipelinePlan::of).collect();
            if let Some(family) = terraform {
                let vars = runtime::plan::terraform_vars(&plans, family)
                    .context("a broker family with a Terraform module")?;
                if family == "rabbitmq" {
                    for exchange in runtime::plan::unknown_exchanges(&plans) {
                        eprintln!(
                            "note: exchange `{exchange}` is published to but declared in no \
                             topology, so its type is not known: left out (declare it under \
                             `topology`, or add it to `exchanges` yourself)"
                        );
                    }
                }
                outln!("{}", serde_json::to_string_pretty(&vars)?);
            } else if *json {
                outln!("{}", serde_json::to_string_pretty(&plans)?);
            } else {
                out!("{}", runtime::plan::table(&plans));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            paths,
            admin,
            otlp_endpoint,
            no_watch,
        } => serve::serve(plugin_host(&cli), paths, admin, otlp_endpoint, *no_watch),
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
            rt.block_on(test_files::run_tests(&host, paths))
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
            command: PluginCommand::Precompile { paths },
        } => {
            if cli.no_cache {
                anyhow::bail!("precompile writes the compile cache: drop --no-cache");
            }
            if cli.cache_dir.is_none() && default_cache_dir().is_none() {
                anyhow::bail!(
                    "precompile has no compile cache to write: name one with --cache-dir or SLUICE_CACHE_DIR (neither they nor XDG_CACHE_HOME nor HOME is set)"
                );
            }
            let host = plugin_host(&cli);
            let (done, errors) = sluice::runtime::precompile(&host, paths);
            for d in &done {
                if d.from_cache {
                    outln!("cached    {}", d.plugin.display());
                } else {
                    outln!(
                        "compiled  {} in {:.1} s",
                        d.plugin.display(),
                        d.compile_time.as_secs_f64()
                    );
                }
            }
            for e in &errors {
                eprintln!("{e:#}");
            }
            if errors.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("{} error(s)", errors.len());
                Ok(ExitCode::FAILURE)
            }
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
