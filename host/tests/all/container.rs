//! The container image, built from the repository's `Dockerfile` (by `scripts/image.sh`, with
//! podman and a Debian base made by debootstrap where no registry is reachable) and started as
//! users start it: the quickstart, hardened as the Helm chart runs it (non-root, read-only root
//! filesystem), health and readiness from outside, SIGTERM, pipelines and plugins mounted from
//! the host, hot reload of a mounted directory, and the compile cache that makes a second start
//! fast.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::repo;

/// The image of this build's `sluice` (a debug binary, stripped: the runtime stage is the one
/// users get). `scripts/image.sh` serialises concurrent builds and reuses unchanged layers.
fn image() -> String {
    let out = Command::new(repo().join("scripts/image.sh"))
        .args(["--tag", "localhost/sluice:test", "--binary"])
        .arg(env!("CARGO_BIN_EXE_sluice"))
        .output()
        .expect("run scripts/image.sh");
    assert!(
        out.status.success(),
        "scripts/image.sh failed (podman and a base image come from scripts/container-tools.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn podman(args: &[&str]) -> Output {
    let tools = std::env::var("SLUICE_TOOLS").unwrap_or_else(|_| "/var/tmp/sluice-tools".into());
    Command::new("podman")
        .args(args)
        // The settings that start a container on this machine (scripts/container-tools.sh).
        .env("CONTAINERS_CONF", format!("{tools}/containers.conf"))
        .output()
        .expect("run podman")
}

/// `podman <args>`, which must succeed; its stdout.
fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A container started with `podman run -d`, removed (with its anonymous volumes) when dropped.
struct Container {
    name: String,
}

impl Container {
    fn start(name: &str, args: &[&str]) -> Container {
        let name = format!("sluice-test-{name}-{}", std::process::id());
        let _ = podman(&["rm", "-f", "-v", &name]);
        let mut all = vec!["run", "-d", "--name", &name];
        all.extend_from_slice(args);
        podman_ok(&all);
        Container { name }
    }

    fn logs(&self) -> String {
        let out = podman(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn exec(&self, command: &[&str]) -> Output {
        let mut all = vec!["exec", self.name.as_str()];
        all.extend_from_slice(command);
        podman(&all)
    }

    fn inspect(&self, format: &str) -> String {
        podman_ok(&["inspect", "--format", format, &self.name])
            .trim()
            .to_owned()
    }

    /// Waits until `GET url` answers 200, failing with the container's logs after `limit`.
    fn wait_until_ok(&self, url: &str, limit: Duration) -> Duration {
        let started = Instant::now();
        loop {
            if reqwest::blocking::get(url).is_ok_and(|r| r.status() == 200) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "{url} did not answer 200 within {limit:?}; container state {}; logs:\n{}",
                self.inspect("{{.State.Status}}"),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `podman stop` (SIGTERM, then SIGKILL after `grace`): the exit code.
    fn stop(&self, grace: Duration) -> i64 {
        podman_ok(&["stop", "--time", &grace.as_secs().to_string(), &self.name]);
        self.inspect("{{.State.ExitCode}}").parse().unwrap()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", "-v", &self.name]);
    }
}

/// A TCP port free on loopback now, for `-p 127.0.0.1:<port>:9477`.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How the Helm chart runs the image: a read-only root filesystem with a volume for the host's
/// working directory (`/tmp` is a tmpfs under `--read-only`), every capability dropped, no
/// privilege escalation. The compile cache is a volume too, given by each test.
const HARDENED: [&str; 5] = [
    "--read-only",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    "-v",
    "/var/lib/sluice",
];
/// An anonymous cache volume: it starts with the image's precompiled handlers.
const CACHE_VOLUME: [&str; 2] = ["-v", "/var/cache/sluice"];

#[test]
fn the_image_runs_the_quickstart_as_non_root_with_a_read_only_root_and_drains_on_sigterm() {
    let image = image();

    // `docker run sluice` on its own: the quickstart, no broker; 20 events, 2 of them malformed
    // on purpose (dead-lettered), then it ends and the container exits 0.
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(&HARDENED);
    args.extend_from_slice(&CACHE_VOLUME);
    args.push(&image);
    let out = podman(&args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "the default command: {stdout}{stderr}"
    );
    // (The `users` sink writes JSON records, the payload quoted in them: count lines.)
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains("sluice/json-enrich"))
            .count(),
        18,
        "the quickstart's 18 well-formed events, enriched: {stdout}{stderr}"
    );
    assert!(
        stderr.contains("received=20 acked=18 outputs=18 filtered=0 dead_lettered=2"),
        "{stderr}"
    );

    // A long quickstart, with the admin port published, to look at from outside.
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:9477");
    let mut args = vec![
        "-p",
        &publish,
        "-e",
        "QUICKSTART_COUNT=100000000",
        "-e",
        "QUICKSTART_RATE=50",
    ];
    args.extend_from_slice(&HARDENED);
    args.extend_from_slice(&CACHE_VOLUME);
    args.push(&image);
    let running = Container::start("quickstart", &args);
    let base = format!("http://127.0.0.1:{port}");
    running.wait_until_ok(&format!("{base}/healthz"), Duration::from_secs(60));
    let ready = running.wait_until_ok(&format!("{base}/readyz"), Duration::from_secs(60));
    eprintln!("ready {ready:?} after /healthz answered (handler precompiled in the image)");
    let metrics = reqwest::blocking::get(format!("{base}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    assert!(metrics.contains("sluice_"), "{metrics}");

    // Not root: the host runs as uid 10001, the image's `sluice` user.
    let status = running.exec(&["cat", "/proc/1/status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .expect("Uid: line");
    assert_eq!(
        uid.split_whitespace().collect::<Vec<_>>(),
        ["10001"; 4],
        "real, effective, saved and filesystem uid: {status}"
    );
    assert_eq!(running.exec(&["id", "-u"]).stdout, b"10001\n");
    // Read-only root: nothing outside the volumes can be written.
    assert_eq!(running.inspect("{{.HostConfig.ReadonlyRootfs}}"), "true");
    let caps = running.exec(&["grep", "^CapEff", "/proc/1/status"]);
    assert_eq!(
        String::from_utf8_lossy(&caps.stdout)
            .split_whitespace()
            .nth(1),
        Some("0000000000000000"),
        "no capability left"
    );
    for path in ["/usr/local/bin/sluice", "/etc/sluice/pipelines/x.yaml"] {
        let touched = running.exec(&["touch", path]);
        assert!(!touched.status.success(), "{path} is writable");
    }

    // `podman stop` sends SIGTERM (the Dockerfile's STOPSIGNAL): the host drains and exits 0
    // well before the grace period would end in SIGKILL.
    let stopping = Instant::now();
    assert_eq!(
        running.stop(Duration::from_secs(60)),
        0,
        "{}",
        running.logs()
    );
    eprintln!(
        "podman stop: drained and exited 0 in {:?}",
        stopping.elapsed()
    );
    let logs = running.logs();
    assert!(
        logs.contains("sluice/json-enrich") && logs.contains("pipeline stopped"),
        "it processed events, then drained: {logs}"
    );
}

/// A pipeline that runs the mounted Python handler (`plugins/dist/python-enrich.wasm`) and writes
/// what it returns to `/out`; with `upper`, the image's `uppercase` handler after it.
fn mounted_pipeline(upper: bool) -> String {
    let second = if upper {
        "  - plugin: /etc/sluice/plugins/dist/uppercase.wasm\n"
    } else {
        ""
    };
    format!(
        "name: mounted
source:
  type: generate
  rate_per_second: 50
  payload: envelope
handlers:
  - plugin: /mnt/plugins/python-enrich.wasm
    config:
      route.user: events
{second}sinks:
  events:
    type: file
    path: /out/events.jsonl
default_sink: events
dead_letter:
  type: file
  path: /out/dead-letter.jsonl
shutdown_deadline_ms: 5000
"
    )
}

#[test]
fn a_mounted_pipeline_and_plugin_run_reload_and_start_again_from_the_cache() {
    let image = image();
    let dir = tempfile::tempdir().unwrap();
    let (pipelines, plugins, out) = (
        dir.path().join("pipelines"),
        dir.path().join("plugins"),
        dir.path().join("out"),
    );
    for d in [&pipelines, &plugins, &out] {
        std::fs::create_dir(d).unwrap();
    }
    // The host runs as uid 10001, which does not own the test's directory.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::copy(
        repo().join("plugins/dist/python-enrich.wasm"),
        plugins.join("python-enrich.wasm"),
    )
    .expect("plugins/dist/python-enrich.wasm (scripts/build-handlers.sh builds it)");
    std::fs::write(pipelines.join("mounted.yaml"), mounted_pipeline(false)).unwrap();

    // A named cache volume that outlives the first container, as the chart's PVC would.
    let cache = format!("sluice-test-cache-{}", std::process::id());
    let _ = podman(&["volume", "rm", "-f", &cache]);
    struct Volume(String);
    impl Drop for Volume {
        fn drop(&mut self) {
            let _ = podman(&["volume", "rm", "-f", &self.0]);
        }
    }
    let _cache = Volume(cache.clone());

    let mounts = [
        format!("{}:/etc/sluice/pipelines:ro", pipelines.display()),
        format!("{}:/mnt/plugins:ro", plugins.display()),
        format!("{}:/out", out.display()),
        format!("{cache}:/var/cache/sluice"),
    ];
    let start = |name: &str| {
        let port = free_port();
        let publish = format!("127.0.0.1:{port}:9477");
        let mut args: Vec<&str> = HARDENED.to_vec();
        args.extend(["-p", &publish]);
        for m in &mounts {
            args.extend(["-v", m.as_str()]);
        }
        args.extend([image.as_str(), "run", "/etc/sluice/pipelines"]);
        let started = Instant::now();
        let container = Container::start(name, &args);
        let url = format!("http://127.0.0.1:{port}/readyz");
        container.wait_until_ok(&url, Duration::from_secs(300));
        (container, started.elapsed())
    };

    // First start: the Python handler (its interpreter inside, ~18 MB) compiles, into the volume.
    let (first, cold) = start("cold");
    wait_for_lines(&out.join("events.jsonl"), 10, &first, |l| {
        l.contains("\"processed_by\":\"sluice/json-enrich\"")
    });
    assert!(
        first.logs().contains("compiling plugin"),
        "the first start compiles the handler: {}",
        first.logs()
    );
    assert_eq!(first.stop(Duration::from_secs(60)), 0, "{}", first.logs());
    drop(first);

    // Second start, same cache volume: nothing to compile.
    let (second, warm) = start("warm");
    eprintln!(
        "start to ready with the mounted Python handler: {cold:?} compiling it (empty cache), \
         {warm:?} from the cache volume"
    );
    assert!(
        !second.logs().contains("compiling plugin"),
        "the second start found the handler in the cache: {}",
        second.logs()
    );

    // Hot reload of the mounted directory: the edited file (written beside, then renamed over
    // the old one, as editors and kubelet do) restarts the pipeline with the new handler chain.
    let edited = pipelines.join(".mounted.yaml.new");
    std::fs::write(&edited, mounted_pipeline(true)).unwrap();
    std::fs::rename(&edited, pipelines.join("mounted.yaml")).unwrap();
    wait_for_lines(&out.join("events.jsonl"), 10, &second, |l| {
        l.contains("\"PROCESSED_BY\":\"SLUICE/JSON-ENRICH\"")
    });
    assert_eq!(second.stop(Duration::from_secs(60)), 0, "{}", second.logs());
    let dead = std::fs::read_to_string(out.join("dead-letter.jsonl")).unwrap_or_default();
    assert_eq!(dead, "", "no event was dead-lettered");
}

/// Waits until `file` holds `count` lines that `matches`, failing with the container's logs
/// after two minutes.
fn wait_for_lines(
    file: &Path,
    count: usize,
    container: &Container,
    matches: impl Fn(&str) -> bool,
) {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if text.lines().filter(|l| matches(l)).count() >= count {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{} has not {count} matching lines after 2 minutes: {}; logs:\n{}",
            file.display(),
            text.lines().last().unwrap_or(""),
            container.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
