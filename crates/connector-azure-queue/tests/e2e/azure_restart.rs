//! Azurite (Azure Queue Storage) restarts mid-stream: its process is killed and started again by
//! scripts/brokers.sh, with its data on disk, and the pipeline reconnects and loses nothing. Alone
//! alone (`.config/nextest.toml`), because it takes the emulator away from everything else for a moment;
//! it always starts it again.

use std::process::Command;
use std::time::Duration;

use sluice_tests::azure::AzureBroker;
use sluice_tests::repo_root;

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// The test brokers (Azurite among them) up again, however the test ends.
fn start_brokers() {
    let status = Command::new(repo_root().join("scripts/brokers.sh"))
        .stdout(std::process::Stdio::null())
        .status()
        .expect("scripts/brokers.sh");
    assert!(status.success(), "scripts/brokers.sh failed");
}

struct StartAgain;

impl Drop for StartAgain {
    fn drop(&mut self) {
        if !listening(10001) {
            start_brokers();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_survives_an_azurite_restart_without_losing_messages() {
    let _guard = StartAgain;
    sluice_tests::conformance::survives_a_broker_restart(&AzureBroker, || {
        let killed = Command::new("pkill")
            .args(["-f", "azurite-queue"])
            .status()
            .expect("pkill");
        assert!(killed.success(), "Azurite was running");
        for _ in 0..100 {
            if !listening(10001) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(!listening(10001), "Azurite stopped");
        std::thread::sleep(Duration::from_secs(2));
        start_brokers();
    })
    .await;
}
