//! What the benchmark binaries share: CPU time read from `/proc`, so that a run can say what each
//! record cost its consumer and its broker, beside how fast it went.

/// CPU time (user + system, seconds) of this process, or of its waited-for children.
pub fn cpu_seconds(children: bool) -> f64 {
    stat_cpu_seconds("/proc/self/stat", children)
}

/// CPU time of every process whose `comm` is `comm` (a broker: `beam.smp` for RabbitMQ,
/// `noida-db` for the Kafka-protocol broker). On a small machine the broker shares the cores
/// with the consumer, so what it spends per record sets a ceiling for every consumer.
pub fn processes_cpu_seconds(comm: &str) -> f64 {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    procs
        .flatten()
        .filter(|p| std::fs::read_to_string(p.path().join("comm")).is_ok_and(|c| c.trim() == comm))
        .map(|p| stat_cpu_seconds(&p.path().join("stat").to_string_lossy(), false))
        .sum()
}

/// Fields 14-17 of a `/proc/<pid>/stat` file, in clock ticks of 1/100 s on Linux.
fn stat_cpu_seconds(path: &str, children: bool) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let rest: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_whitespace()
        .collect();
    let field = |k: usize| {
        rest.get(k - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let ticks = if children {
        field(16) + field(17)
    } else {
        field(14) + field(15)
    };
    ticks / 100.0
}
