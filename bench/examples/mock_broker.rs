//! Serves the client's in-memory mock broker on a loopback port until Ctrl-C, so the bench can
//! be tried without a real cluster:
//!
//! ```text
//! cargo run -p laminar-bench --example mock_broker
//! laminar-bench e2e -b <printed address> --create-topic --duration 5s
//! ```
//! The mock keeps everything in memory and is meant for trying the tool, not for measuring.

use laminar_client::mock_broker::{MockBroker, MockOptions};

#[tokio::main(flavor = "multi_thread")]
async fn main() -> std::io::Result<()> {
    let broker = MockBroker::start(MockOptions { auto_create_topics: true, ..MockOptions::default() }).await?;
    println!("mock broker listening on {}", broker.address());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
