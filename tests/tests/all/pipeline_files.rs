//! Pipeline files: every bad file gives its exact errors, all at once, with their paths.

use std::path::Path;

use sluice::config::parse;

fn errors(text: &str) -> Vec<String> {
    let env = |name: &str| (name == "SET").then(|| "from-env".to_owned());
    match parse(Path::new("pipelines/orders.yaml"), text, env) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

const VALID: &str = "
source: { type: memory, queue: in }
sinks: { primary: { type: memory, queue: out } }
dead_letter: { type: memory, queue: dead }
";

#[test]
fn a_minimal_file_is_valid_and_gets_defaults() {
    let cfg = parse(Path::new("pipelines/orders.yaml"), VALID, |_| None).unwrap();
    assert_eq!(cfg.name, "orders", "named after the file");
    assert_eq!(cfg.default_sink, "primary", "the only sink is the default");
    assert_eq!(cfg.delivery.max_in_flight, 1024);
    assert_eq!(cfg.delivery.retry.max_attempts, 5);
    assert_eq!(cfg.shutdown_deadline_ms, 30_000);
}

#[test]
fn every_bad_file_gives_its_exact_errors() {
    let cases: &[(&str, &[&str])] = &[
        (
            "source: { type: memory, queue: in }\nsinks: { primary: { type: memory } }\ndead_letter: { type: memory, queue: d }",
            &["pipelines/orders.yaml:2:19: sinks.primary.queue: missing field"],
        ),
        (
            "source: { type: kafkaa }\nsinks: { p: { type: drop } }\ndead_letter: { type: drop }",
            &[
                "pipelines/orders.yaml:1:11: source.type: unknown type `kafkaa`, expected one of `generate`, `file`, `stdin`, `memory`, `kafka`, `rabbitmq`, `sqs`, `azure_queue`, `zeromq`",
            ],
        ),
        (
            "source: { type: memory, queue: in, queue_name: x }\nsinks: { p: { type: drop } }\ndead_letter: { type: drop }",
            &[
                "pipelines/orders.yaml:1:36: source.queue_name: unknown field, expected `queue` or `visibility_timeout_ms`",
            ],
        ),
        (
            "sinks: { p: { type: drop } }",
            &[
                "pipelines/orders.yaml:1:1: source: missing field",
                "pipelines/orders.yaml:1:1: dead_letter: missing field",
            ],
        ),
        (
            "source: { type: memory, queue: in }\ndead_letter: { type: drop }",
            &[
                "pipelines/orders.yaml:1:1: sinks: missing field: a pipeline needs at least one sink",
            ],
        ),
        (
            "source: { type: memory, queue: in }\nsinks: { a: { type: drop }, b: { type: drop } }\ndead_letter: { type: drop }",
            &[
                "pipelines/orders.yaml:1:1: default_sink: missing field: required when there is more than one sink",
            ],
        ),
        (
            "source: { type: memory, queue: in }\nsinks: { a: { type: drop } }\ndefault_sink: b\ndead_letter: { type: drop }",
            &["pipelines/orders.yaml:3:1: default_sink: names no sink `b`; sinks are: a"],
        ),
        (
            "source: { type: memory, queue: in }\nsinks: { a: { type: drop } }\ndead_letter: { type: drop }\nhandlers:\n  - plugn: x.wasm\n  - plugin: y.wasm\n    limits: { timeout_ms: 0, memory_mb: 0, stack_kb: 1 }",
            &[
                "pipelines/orders.yaml:5:5: handlers[0].plugn: unknown field, expected one of `plugin`, `name`, `config`, `limits`, `batch_abi`, `version_header`, `grants`",
                "pipelines/orders.yaml:5:5: handlers[0].plugin: missing field",
                "pipelines/orders.yaml:7:15: handlers[1].limits.timeout_ms: must be between 1 and 3600000",
                "pipelines/orders.yaml:7:30: handlers[1].limits.memory_mb: must be between 1 and 4096",
                "pipelines/orders.yaml:7:44: handlers[1].limits.stack_kb: must be between 16 and 65536",
            ],
        ),
        (
            "source: { type: memory, queue: in }\nsinks: { a: { type: drop } }\ndead_letter: { type: drop }\ndelivery:\n  max_in_flight: lots\n  on_invalid: drop\n  retry: { jitter: 2, base_delay_ms: 100000 }\n  rate_limit: { per_second: 0 }",
            &[
                "pipelines/orders.yaml:5:3: delivery.max_in_flight: invalid type: string \"lots\", expected usize",
                "pipelines/orders.yaml:6:3: delivery.on_invalid: unknown value `drop`, expected `dead_letter` or `discard`",
                "pipelines/orders.yaml:7:12: delivery.retry.jitter: must be between 0 and 1",
                "pipelines/orders.yaml:7:23: delivery.retry.base_delay_ms: must not exceed retry.max_delay_ms",
                "pipelines/orders.yaml:8:17: delivery.rate_limit.per_second: must be between 1 and 1000000000",
            ],
        ),
        (
            "source: { type: memory, queue: \"${UNSET}\" }\nsinks: { a: { type: drop } }\ndead_letter: { type: file, path: \"${ALSO_UNSET}\" }",
            &[
                "pipelines/orders.yaml:1:32: source.queue: environment variable `UNSET` is not set (use `${UNSET:-default}` for a default)",
                "pipelines/orders.yaml:3:34: dead_letter.path: environment variable `ALSO_UNSET` is not set (use `${ALSO_UNSET:-default}` for a default)",
            ],
        ),
        (
            "name: has space\nsource: { type: generate, rate_per_second: -1, malformed_every: 0 }\nsinks: { a: { type: drop } }\ndead_letter: { type: drop }\nshutdown_deadline_ms: 0\nextra: 1",
            &[
                "pipelines/orders.yaml:1:1: name: `has space` is not a valid pipeline name (letters, digits, `-`, `_`, `.`)",
                "pipelines/orders.yaml:2:27: source.rate_per_second: must be a positive number",
                "pipelines/orders.yaml:2:48: source.malformed_every: must be between 1 and 1000000000000",
                "pipelines/orders.yaml:5:1: shutdown_deadline_ms: must be between 1 and 3600000",
                "pipelines/orders.yaml:6:1: extra: unknown field, expected one of name, source, handlers, sinks, default_sink, dead_letter, delivery, shutdown_deadline_ms, logging",
            ],
        ),
        (
            "source: { type: generate }\nsinks: { a: { type: drop } }\ndead_letter: { type: drop }\nlogging: { payloads: yes-please, scrub_fields: [card..number, \"\"], hash: true }",
            &[
                "pipelines/orders.yaml:4:12: logging.payloads: invalid type: string \"yes-please\", expected a boolean",
                "pipelines/orders.yaml:4:49: logging.scrub_fields[0]: expected a dotted JSON path such as `card.number`",
                "pipelines/orders.yaml:4:63: logging.scrub_fields[1]: expected a dotted JSON path such as `card.number`",
                "pipelines/orders.yaml:4:68: logging.hash: unknown field, expected `payloads` or `scrub_fields`",
            ],
        ),
        (
            "source: { type: generate }\nhandlers:\n  - plugin: a/enrich.wasm\n  - plugin: b/enrich.wasm\nsinks: { dead_letter: { type: drop } }\ndead_letter: { type: drop }",
            &[
                "pipelines/orders.yaml:4:5: handlers[1]: the name `enrich` is taken by handlers[0]; give one of them a `name`",
                "pipelines/orders.yaml:5:10: sinks.dead_letter: `dead_letter` names the pipeline's dead-letter sink; choose another sink name",
            ],
        ),
        (
            "- just\n- a list",
            &[
                "pipelines/orders.yaml: a pipeline file must be a mapping with `source`, `sinks` and `dead_letter`",
            ],
        ),
        (
            "source: { queue: in }\nsinks: { a: { type: drop, extra: 1 }, b: 7 }\ndefault_sink: a\ndead_letter: ~",
            &[
                "pipelines/orders.yaml:1:9: source.type: missing field",
                "pipelines/orders.yaml:2:27: sinks.a.extra: unknown field",
                "pipelines/orders.yaml:2:39: sinks.b: invalid type: integer `7`, expected a mapping with a `type`",
                "pipelines/orders.yaml:4:1: dead_letter: missing field",
            ],
        ),
        (
            "source: { type: kafka, brokers: b, topics: [t], group: g, assignment: sticky, tls: yes, session_timeout_ms: -5 }\nsinks: { a: { type: rabbitmq, url: \"amqp://h\", persistent: 1 } }\ndead_letter: { type: drop }",
            &[
                "pipelines/orders.yaml:1:59: source.assignment: unknown value `sticky`, expected one of `range`, `roundrobin`, `cooperative_sticky`",
                "pipelines/orders.yaml:1:79: source.tls: invalid type: boolean `true`, expected a map",
                "pipelines/orders.yaml:1:89: source.session_timeout_ms: must be between 1 and 3600000",
                "pipelines/orders.yaml:2:48: sinks.a.persistent: invalid type: integer `1`, expected a boolean",
            ],
        ),
        (
            "handlers: 3\nsource: { type: memory, queue: in }\nsinks: { a: { type: drop } }\ndead_letter: { type: drop }",
            &["pipelines/orders.yaml:1:1: handlers: must be a list of handlers"],
        ),
    ];
    let mut wrong = Vec::new();
    for (text, expected) in cases {
        let got = errors(text);
        if got != *expected {
            wrong.push(format!(
                "for file:\n{text}\n  got: {got:#?}\n want: {expected:#?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn a_zeromq_source_is_accepted_once_at_most_once_is() {
    let text = "source: { type: zeromq, endpoint: \"tcp://127.0.0.1:5555\" }\nsinks: { a: { type: drop } }\ndead_letter: { type: drop }\ndelivery: { guarantee: at_most_once }";
    assert_eq!(errors(text), Vec::<String>::new());
}

/// A sink that cannot confirm delivery (ZeroMQ) needs the pipeline to say it accepts at most
/// once, like a source that cannot acknowledge; the dead-letter sink too.
#[test]
fn a_zeromq_sink_is_refused_unless_at_most_once_is_accepted() {
    let text = "source: { type: generate }\nsinks: { a: { type: zeromq, endpoint: \"tcp://127.0.0.1:5556\" } }\ndead_letter: { type: zeromq, endpoint: \"tcp://127.0.0.1:5557\" }";
    let errs = errors(text);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(
        errs[0].contains("sinks.a.type: a `zeromq` sink cannot confirm delivery"),
        "{errs:#?}"
    );
    assert!(
        errs[1].contains("dead_letter.type: a `zeromq` sink"),
        "{errs:#?}"
    );
    let accepted = format!("{text}\ndelivery: {{ guarantee: at_most_once }}");
    assert_eq!(errors(&accepted), Vec::<String>::new());
}

#[test]
fn invalid_yaml_says_where() {
    let errs = errors("source: [\n");
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("pipelines/orders.yaml: not valid YAML:"),
        "{}",
        errs[0]
    );
    assert!(errs[0].contains("line 1 column 9"), "{}", errs[0]);
}

#[test]
fn environment_values_and_defaults_are_interpolated() {
    let text = "source: { type: memory, queue: \"${SET}\" }\nsinks: { a: { type: drop } }\ndead_letter: { type: drop }\ndelivery: { max_in_flight: ${WINDOW:-7} }";
    let cfg = parse(Path::new("p.yaml"), text, |n| {
        (n == "SET").then(|| "from-env".to_owned())
    })
    .unwrap();
    assert_eq!(cfg.delivery.max_in_flight, 7);
    match cfg.source {
        sluice::connector::SourceConfig::memory(m) => assert_eq!(m.queue, "from-env"),
        other => panic!("unexpected source {other:?}"),
    }
}

#[test]
fn duplicate_pipeline_names_across_files_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["a.yaml", "b.yaml"] {
        std::fs::write(dir.path().join(file), format!("name: same\n{VALID}")).unwrap();
    }
    let (loaded, errors) = sluice::config::load_paths(&[dir.path().to_path_buf()]);
    assert_eq!(loaded.len(), 1);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].to_string().ends_with(&format!(
        "b.yaml:1:1: name: pipeline `same` is already defined in {}",
        dir.path().join("a.yaml").display()
    )));
}
